package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

// formatCounter counts how often slog asks it for its value, that is, how often it is formatted.
type formatCounter struct{ formatted *int }

func (c formatCounter) LogValue() slog.Value {
	*c.formatted++
	return slog.StringValue("formatted")
}

func TestAttributesOfDisabledRecordsAreNeverFormatted(t *testing.T) {
	formatted := 0
	var out bytes.Buffer
	logger := slog.New(&deferredAttrsHandler{base: slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn})})

	// What FerretDB's SQL layer does around every statement.
	logger.With(slog.Any("args", formatCounter{&formatted})).Debug(">>> INSERT")

	if formatted != 0 || out.Len() != 0 {
		t.Fatalf("a debug record at warn level formatted its attributes %d times and wrote %q", formatted, out.String())
	}
}

func TestEnabledRecordsAreWrittenAsTheBaseHandlerWritesThem(t *testing.T) {
	var deferred, direct bytes.Buffer
	options := &slog.HandlerOptions{
		Level: slog.LevelDebug,
		// Times differ between the two writes; everything else must not.
		ReplaceAttr: func(_ []string, attr slog.Attr) slog.Attr {
			if attr.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return attr
		},
	}
	log := func(logger *slog.Logger) {
		parent := logger.With("name", "sqlite").WithGroup("query")
		// Two loggers derived from one parent must not see each other's attributes.
		first, second := parent.With("args", "[1]"), parent.With("rows", 2)
		first.WarnContext(context.Background(), "first")
		second.Warn("second", "took", "1ms")
		parent.Debug("parent")
	}
	log(slog.New(&deferredAttrsHandler{base: slog.NewTextHandler(&deferred, options)}))
	log(slog.New(slog.NewTextHandler(&direct, options)))

	if deferred.String() != direct.String() {
		t.Fatalf("deferred handler wrote\n%s\nwhere the text handler writes\n%s", deferred.String(), direct.String())
	}
	if lines := strings.Count(direct.String(), "\n"); lines != 3 {
		t.Fatalf("expected 3 lines, got %d:\n%s", lines, direct.String())
	}
}
