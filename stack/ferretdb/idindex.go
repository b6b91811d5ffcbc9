package main

// FerretDB v1.24.2's SQLite backend answers a query whose filter is `{_id: <string or ObjectId>}` alone with
//
//	SELECT _ferretdb_sjson FROM <table> WHERE _ferretdb_sjson->'$._id' = ?
//
// but indexes `_id` as `_ferretdb_sjson->"_id"`. SQLite uses an expression index only for the very expression
// it was built on, so that lookup scans the whole table (EXPLAIN QUERY PLAN: SCAN), and a GridFS chunk fetched by
// its _id costs a pass over every byte stored beside it. idIndexer adds, to every collection table, an index on
// the expression the query uses; SQLite then answers it from the index (SEARCH ... USING INDEX).
//
// Storage only: FerretDB's code and its own metadata are untouched (its listIndexes does not show these), and
// SQLite drops the index with its table when FerretDB drops a collection.

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the SQLite driver FerretDB itself uses
)

const idLookupIndexSuffix = "_vid2mp3_id_lookup"

type idIndexer struct {
	dir    string      // FerretDB's SQLite directory: one <database>.sqlite file per database
	writes *sync.Mutex // held while indexing, so that no FerretDB write waits on SQLite's lock meanwhile
	logger *slog.Logger
}

// run indexes the tables of new collections once a second until ctx ends.
func (x *idIndexer) run(ctx context.Context) {
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	for {
		x.indexAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

func (x *idIndexer) indexAll(ctx context.Context) {
	files, err := filepath.Glob(filepath.Join(x.dir, "*.sqlite"))
	if err != nil {
		x.logger.Warn("listing FerretDB's SQLite files", "error", err)
		return
	}
	for _, file := range files {
		if err := x.indexDatabase(ctx, file); err != nil && ctx.Err() == nil {
			x.logger.Warn("indexing _id lookups", "file", file, "error", err)
		}
	}
}

// indexDatabase opens the file afresh each time: FerretDB deletes a database's file when it drops the database.
func (x *idIndexer) indexDatabase(ctx context.Context, file string) error {
	// The same settings FerretDB opens its files with (write-ahead log, a 10 s wait for locks); mode=rw never
	// creates a file FerretDB has just removed.
	uri := "file:" + (&url.URL{Path: file}).EscapedPath() +
		"?mode=rw&_pragma=busy_timeout(10000)&_pragma=journal_mode(wal)"
	db, err := sql.Open("sqlite", uri)
	if err != nil {
		return err
	}
	defer db.Close()
	missing, err := tablesWithoutIDLookupIndex(ctx, db)
	if err != nil || len(missing) == 0 {
		return err
	}
	x.writes.Lock()
	defer x.writes.Unlock()
	for _, table := range missing {
		statement := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s (_ferretdb_sjson->'$._id')`,
			quoteIdentifier(table+idLookupIndexSuffix), quoteIdentifier(table))
		if _, err := db.ExecContext(ctx, statement); err != nil {
			return fmt.Errorf("table %s: %w", table, err)
		}
		x.logger.Info("indexed _id lookups", "file", filepath.Base(file), "table", table)
	}
	return nil
}

func tablesWithoutIDLookupIndex(ctx context.Context, db *sql.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx, `
		SELECT c.table_name FROM _ferretdb_collections AS c
		WHERE EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = c.table_name)
		  AND NOT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = c.table_name || ?)`,
		idLookupIndexSuffix)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") { // a database FerretDB has not set up yet
			return nil, nil
		}
		return nil, err
	}
	defer rows.Close()
	var tables []string
	for rows.Next() {
		var table string
		if err := rows.Scan(&table); err != nil {
			return nil, err
		}
		tables = append(tables, table)
	}
	return tables, rows.Err()
}

func quoteIdentifier(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }
