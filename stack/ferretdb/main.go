// Command ferretdb runs FerretDB v1.24.2, the MongoDB wire-protocol server of the local stack, through its
// embeddable package (github.com/FerretDB/FerretDB/ferretdb) on the SQLite backend.
//
// Why not `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2`: a binary built that way panics at
// start-up because the release-version stamp (build/version/version.txt) is generated in FerretDB's own
// repository and is not part of the module. The embeddable package is the same server without that stamp,
// with telemetry disabled and no debug listener.
//
// FerretDB itself listens on a Unix socket in a private directory; the public address is a writeSerializer
// (writelock.go says why). On SQLite, an idIndexer adds the index FerretDB's _id lookups need (idindex.go).
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listenAddr := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	sqliteURL := flag.String("sqlite-url", "file:data/", "SQLite backend: a file: URL of a directory, ending in /")
	postgresqlURL := flag.String("postgresql-url", "", "use the PostgreSQL backend at this URL instead of SQLite")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	flag.Parse()

	// Every document FerretDB returns or deletes is decoded from JSON into fresh buffers, so media reads are
	// mostly allocation and garbage collection. Collecting at 5x the live heap instead of 2x reads GridFS chunks
	// about 30% faster for ~60 MiB more peak memory (docs/PERFORMANCE.md). GOGC, when set, still decides.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		log.Fatalf("-log-level: %v", err)
	}
	logger := slog.New(&deferredAttrsHandler{base: slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})})

	// A private directory keeps the socket's path short (the kernel allows 107 bytes) and away from other users.
	socketDir, err := os.MkdirTemp("", "vid2mp3-ferretdb-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(socketDir)
	socket := filepath.Join(socketDir, "ferretdb.sock")

	config := &ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{Unix: socket},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: *sqliteURL,
	}
	if *postgresqlURL != "" {
		config.Handler, config.SQLiteURL, config.PostgreSQLURL = "postgresql", "", *postgresqlURL
	}
	server, err := ferretdb.New(config)
	if err != nil {
		log.Fatal(err)
	}
	public, err := net.Listen("tcp", *listenAddr)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	serializer := &writeSerializer{
		backend: func() (net.Conn, error) { return net.Dial("unix", socket) },
		logger:  logger,
	}
	go func() {
		<-ctx.Done()
		public.Close()
	}()
	if config.Handler == "sqlite" {
		indexer := &idIndexer{dir: sqliteDir(*sqliteURL), writes: &serializer.writes, logger: logger}
		go indexer.run(ctx)
	}
	go func() {
		if err := serializer.serve(public); err != nil {
			log.Printf("write serializer: %v", err)
			stop()
		}
	}()
	log.Printf("FerretDB listening on %s", *listenAddr)
	if err := server.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

// sqliteDir is the directory of a `file:` URL such as `file:data/` or `file:/var/lib/ferretdb/?mode=rwc`.
func sqliteDir(sqliteURL string) string {
	path, _, _ := strings.Cut(strings.TrimPrefix(sqliteURL, "file:"), "?")
	return path
}
