package lock_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"reservation/lock"
)

// TestRedisLoggerWritesJSON: go-redis's messages, through RedisLogger, are WARN lines of the
// service's JSON log, without go-redis's own "redis: " prefix. Needs no server.
func TestRedisLoggerWritesJSON(t *testing.T) {
	var out bytes.Buffer
	l := lock.RedisLogger(slog.New(slog.NewJSONHandler(&out, nil)))
	l.Printf(t.Context(), "redis: connection pool: failed to dial after %d attempts: %s", 1, "refused")
	var rec struct{ Level, Msg, Component string }
	if err := json.Unmarshal(out.Bytes(), &rec); err != nil {
		t.Fatalf("not one JSON line: %q", out.String())
	}
	if rec.Level != "WARN" || rec.Msg != "connection pool: failed to dial after 1 attempts: refused" || rec.Component != "go-redis" {
		t.Errorf("got %+v", rec)
	}
}
