package main

import (
	"context"
	"log/slog"
)

// deferredAttrsHandler is a slog.Handler that formats what Logger.With and WithGroup add only when a record is
// actually written.
//
// Why: FerretDB's SQL layer calls `logger.With(slog.Any("args", args)).Debug(...)` around every statement it runs,
// and slog's TextHandler formats With's attributes at once, whatever the level. For an insert, args hold the whole
// document as JSON, so at the default "warn" level each written GridFS chunk (1 MiB of media, 1.4 MB of JSON) was
// quoted and escaped twice for a debug line nobody sees: 46% of FerretDB's CPU time while writing media
// (pprof, docs/PERFORMANCE.md). Deferring the formatting to Handle, which only sees enabled records, removes it.
type deferredAttrsHandler struct {
	base slog.Handler
	// What With and WithGroup asked for, in order, replayed onto base when a record is handled.
	steps []func(slog.Handler) slog.Handler
}

func (h *deferredAttrsHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.base.Enabled(ctx, level)
}

func (h *deferredAttrsHandler) Handle(ctx context.Context, record slog.Record) error {
	handler := h.base
	for _, step := range h.steps {
		handler = step(handler)
	}
	return handler.Handle(ctx, record)
}

func (h *deferredAttrsHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return h.with(func(handler slog.Handler) slog.Handler { return handler.WithAttrs(attrs) })
}

func (h *deferredAttrsHandler) WithGroup(name string) slog.Handler {
	return h.with(func(handler slog.Handler) slog.Handler { return handler.WithGroup(name) })
}

func (h *deferredAttrsHandler) with(step func(slog.Handler) slog.Handler) slog.Handler {
	// A fresh slice each time: sibling loggers derived from one parent must not share appends.
	steps := make([]func(slog.Handler) slog.Handler, len(h.steps), len(h.steps)+1)
	copy(steps, h.steps)
	return &deferredAttrsHandler{base: h.base, steps: append(steps, step)}
}
