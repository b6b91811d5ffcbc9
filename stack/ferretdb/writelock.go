package main

// FerretDB v1.24.2 applies an update as read, modify in Go, write the whole document back, with no transaction
// around the three (FerretDB#3040). Two updates of one document at the same moment then lose one of them, which
// MongoDB never does: it applies each write to a document atomically. vid2mp3's job record is a state machine of
// compare-and-set updates, so the local stack needs MongoDB's guarantee.
//
// writeSerializer gives it back without touching FerretDB: it stands in front of FerretDB on the public address
// and lets one write command at a time through, from all connections. Reads pass in parallel. It reads the
// MongoDB wire protocol only as far as the command's name, and forwards every byte unchanged.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
)

const (
	opQuery      = 2004
	opCompressed = 2012
	opMsg        = 2013

	headerSize = 16
	// The largest message MongoDB accepts (maxMessageSizeBytes); anything longer is not a message.
	maxMessageSize = 48_000_000

	flagChecksumPresent = 1 << 0
	flagMoreToCome      = 1 << 1
)

// writeCommands are the commands that change data or metadata. Every other command only reads.
var writeCommands = map[string]bool{
	"insert": true, "update": true, "delete": true, "findAndModify": true, "findandmodify": true,
	"create": true, "drop": true, "dropDatabase": true, "createIndexes": true, "dropIndexes": true,
	"renameCollection": true, "collMod": true, "aggregate": true, // aggregate: $out and $merge write
}

type writeSerializer struct {
	backend func() (net.Conn, error)
	writes  sync.Mutex
	logger  *slog.Logger
}

func (s *writeSerializer) serve(listener net.Listener) error {
	for {
		client, err := listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go s.relay(client)
	}
}

// relay forwards one client connection to its own backend connection, one request and its replies at a time,
// which is how MongoDB drivers use a connection.
func (s *writeSerializer) relay(client net.Conn) {
	defer client.Close()
	backend, err := s.backend()
	if err != nil {
		s.logger.Error("cannot reach FerretDB behind the write serializer", "error", err)
		return
	}
	defer backend.Close()
	fromClient, fromBackend := bufio.NewReader(client), bufio.NewReader(backend)
	for {
		request, err := readMessage(fromClient)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.logger.Warn("dropping a client connection", "error", err)
			}
			return
		}
		if err := s.exchange(request, backend, fromBackend, client); err != nil {
			s.logger.Warn("dropping a client connection", "error", err)
			return
		}
	}
}

func (s *writeSerializer) exchange(request []byte, backend net.Conn, fromBackend *bufio.Reader, client net.Conn) error {
	if isWrite(request) {
		s.writes.Lock()
		defer s.writes.Unlock()
	}
	if _, err := backend.Write(request); err != nil {
		return err
	}
	if !expectsReply(request) {
		return nil
	}
	for {
		reply, err := readMessage(fromBackend)
		if err != nil {
			return err
		}
		if _, err := client.Write(reply); err != nil {
			return err
		}
		if !moreToCome(reply) { // an exhaust cursor sends several replies to one request
			return nil
		}
	}
}

func readMessage(r *bufio.Reader) ([]byte, error) {
	header, err := r.Peek(headerSize)
	if err != nil {
		if len(header) == 0 && errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("reading a message header: %w", err)
	}
	length := int(int32(binary.LittleEndian.Uint32(header)))
	if length < headerSize || length > maxMessageSize {
		return nil, fmt.Errorf("a message of %d bytes is not MongoDB wire protocol", length)
	}
	message := make([]byte, length)
	if _, err := io.ReadFull(r, message); err != nil {
		return nil, fmt.Errorf("reading a message of %d bytes: %w", length, err)
	}
	return message, nil
}

func opCode(message []byte) int32 { return int32(binary.LittleEndian.Uint32(message[12:16])) }

func msgFlags(message []byte) uint32 {
	if opCode(message) != opMsg || len(message) < headerSize+4 {
		return 0
	}
	return binary.LittleEndian.Uint32(message[headerSize:])
}

func expectsReply(request []byte) bool { return msgFlags(request)&flagMoreToCome == 0 }

func moreToCome(reply []byte) bool { return msgFlags(reply)&flagMoreToCome != 0 }

// isWrite tells whether a request may change data. What it cannot read (a compressed message, a malformed one)
// counts as a write: serialising a read costs only time, letting a write race loses data.
func isWrite(request []byte) bool {
	switch opCode(request) {
	case opMsg:
		name, ok := msgCommandName(request)
		return !ok || writeCommands[name]
	case opQuery: // legacy: only the handshake (hello, isMaster) uses it now
		return false
	default:
		return true
	}
}

// msgCommandName returns the first key of an OP_MSG's body section (kind 0), which is the command's name.
func msgCommandName(message []byte) (string, bool) {
	end := len(message)
	if msgFlags(message)&flagChecksumPresent != 0 {
		end -= 4
	}
	for at := headerSize + 4; at < end; {
		kind := message[at]
		at++
		if at+4 > end {
			return "", false
		}
		size := int(int32(binary.LittleEndian.Uint32(message[at:])))
		if size < 5 || at+size > end {
			return "", false
		}
		if kind == 0 { // the body: a BSON document; its first element is type byte, then the key as a C string
			document := message[at : at+size]
			for i := 5; i < len(document); i++ {
				if document[i] == 0 {
					return string(document[5:i]), true
				}
			}
			return "", false
		}
		at += size // kind 1, a document sequence: its size covers itself, the identifier and the documents
	}
	return "", false
}
