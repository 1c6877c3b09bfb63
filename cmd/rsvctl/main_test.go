package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"reservation/queue"
	"reservation/repo/repotest"
	"reservation/server"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// serve runs a replica in-process on loopback (as reservationd wires it), on a fresh
// database, and returns its gRPC address; auth are an authenticator's server options.
func serve(t *testing.T, auth ...grpc.ServerOption) string {
	t.Helper()
	db, _ := repotest.NewDB(t)
	quiet := slog.New(slog.DiscardHandler)
	d, err := server.New(t.Context(), db, nil, server.Options{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Auth: auth, Logger: quiet,
		Feed: queue.Options{PollInterval: 5 * time.Millisecond, StampInterval: 5 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	t.Cleanup(func() { d.Close() })
	return d.GRPCAddr()
}

// rsvctl runs one command line against addr, showing times in UTC, and returns its output,
// errors and exit code.
func rsvctl(t *testing.T, addr string, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"--addr", addr, "--tz", "UTC"}, args...), &out, &errOut)
	return out.String(), errOut.String(), code
}

var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// golden compares got, with reservation ids numbered in order of appearance, to a file.
func golden(t *testing.T, name, got string) {
	t.Helper()
	ids := map[string]string{}
	got = uuidRE.ReplaceAllStringFunc(got, func(id string) string {
		if _, ok := ids[id]; !ok {
			ids[id] = "<id" + string(rune('1'+len(ids))) + ">"
		}
		return ids[id]
	})
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n--- got\n%s--- want\n%s", name, got, want)
	}
}

func TestCommands(t *testing.T) {
	addr := serve(t)
	out, errs, code := rsvctl(t, addr, "reserve", "--user", "alice", "--resource", "room-1", "--start", "2030-03-01T14:00:00Z", "--for", "2h", "--note", "late check-in")
	if code != exitOK {
		t.Fatalf("reserve: exit %d: %s", code, errs)
	}
	golden(t, "reserve", out)
	id := uuidRE.FindString(out)
	rsvctl(t, addr, "reserve", "--user", "bob", "--resource", "room-1", "--start", "2030-03-01T17:00:00Z", "--end", "2030-03-01T18:00:00Z", "--status", "confirmed")

	// A conflict names what is in the way and exits 4.
	_, errs, code = rsvctl(t, addr, "reserve", "--user", "carol", "--resource", "room-1", "--start", "2030-03-01T15:00:00Z", "--for", "3h")
	if code != exitConflict {
		t.Fatalf("conflicting reserve: exit %d, want %d: %s", code, exitConflict, errs)
	}
	golden(t, "conflict", errs)

	if _, errs, code = rsvctl(t, addr, "confirm", id, "--version", "7"); code != exitStale {
		t.Fatalf("confirm at a stale version: exit %d: %s", code, errs)
	}
	if out, errs, code = rsvctl(t, addr, "confirm", id); code != exitOK || !strings.Contains(out, "CONFIRMED") {
		t.Fatalf("confirm: exit %d: %s%s", code, out, errs)
	}
	if _, errs, code = rsvctl(t, addr, "update", id, "--note", "early"); code != exitOK {
		t.Fatalf("update: exit %d: %s", code, errs)
	}
	out, errs, code = rsvctl(t, addr, "query", "--resource", "room-1")
	if code != exitOK {
		t.Fatalf("query: exit %d: %s", code, errs)
	}
	golden(t, "query", out)

	// -o json: one object per line, as the API spells it.
	out, _, _ = rsvctl(t, addr, "-o", "json", "query", "--resource", "room-1")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("query -o json: %d lines, want 2:\n%s", len(lines), out)
	}
	var first struct {
		ID      string `json:"id"`
		Status  string `json:"status"`
		Version string `json:"version"`
		Note    string `json:"note"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first.ID != id || first.Status != "RESERVATION_STATUS_CONFIRMED" || first.Version != "3" || first.Note != "early" {
		t.Fatalf("query -o json first line %s: %+v, %v", lines[0], first, err)
	}

	out, _, code = rsvctl(t, addr, "free", "--resource", "room-1", "--start", "2030-03-01T12:00:00Z", "--end", "2030-03-01T20:00:00Z", "--min", "1h")
	if code != exitOK {
		t.Fatalf("free: exit %d", code)
	}
	golden(t, "free", out)

	batch := filepath.Join(t.TempDir(), "trip.json")
	os.WriteFile(batch, []byte(`[{"user_id": "dan", "resource_id": "room-2", "start": "2030-04-01T10:00:00Z", "end": "2030-04-02T10:00:00Z"},
		{"user_id": "dan", "resource_id": "parking-2", "start": "2030-04-01T10:00:00Z", "end": "2030-04-02T10:00:00Z"}]`), 0o600)
	if out, errs, code = rsvctl(t, addr, "batch", "-f", batch, "--request-id", "trip-1"); code != exitOK || strings.Count(out, "\n") != 3 {
		t.Fatalf("batch: exit %d: %s%s", code, out, errs)
	}

	// listen tails the feed until stopped; here a deadline stops it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var lout, lerr bytes.Buffer
	run(ctx, []string{"--addr", addr, "-o", "json", "listen", "--after", "0", "--resource", "room-2"}, &lout, &lerr)
	var change struct {
		Seq         string `json:"seq"`
		Op          string `json:"op"`
		Reservation struct {
			ResourceID string `json:"resource_id"`
		} `json:"reservation"`
	}
	if err := json.Unmarshal(bytes.SplitN(lout.Bytes(), []byte("\n"), 2)[0], &change); err != nil || change.Op != "RESERVATION_UPDATE_TYPE_CREATE" || change.Reservation.ResourceID != "room-2" || change.Seq != "5" {
		t.Fatalf("listen -o json: %+v, %v:\n%s%s", change, err, lout.String(), lerr.String())
	}
	if _, errs, code = rsvctl(t, addr, "cancel", id); code != exitOK {
		t.Fatalf("cancel: exit %d: %s", code, errs)
	}
	if _, errs, code = rsvctl(t, addr, "get", id); code != exitNotFound || !strings.Contains(errs, "was cancelled at") {
		t.Fatalf("get after cancel: exit %d: %s", code, errs)
	}
}

func TestTimes(t *testing.T) {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	c := &cli{now: now, tz: berlin, fields: map[string]string{}}
	for in, want := range map[string]time.Time{
		"now": now, "+1h": now.Add(time.Hour), "-30m": now.Add(-30 * time.Minute), "+1d": now.Add(24 * time.Hour), "+2w": now.Add(14 * 24 * time.Hour),
		"2030-03-01T14:00:00Z": time.Date(2030, 3, 1, 14, 0, 0, 0, time.UTC), "2030-03-01T15:00:00+01:00": time.Date(2030, 3, 1, 14, 0, 0, 0, time.UTC),
		"2030-03-01": time.Date(2030, 3, 1, 0, 0, 0, 0, berlin), "2030-07-01 14:00": time.Date(2030, 7, 1, 14, 0, 0, 0, berlin),
		"2030-07-01T14:00:30": time.Date(2030, 7, 1, 14, 0, 30, 0, berlin),
	} {
		if got, err := c.parseTime("start", in); err != nil || !got.Equal(want) {
			t.Errorf("%q: %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"tomorrow", "+1x", "2030-13-01", "2030-03-01 25:00", "+"} {
		if _, err := c.parseTime("start", bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
	r, err := c.window("room", "+1h", "", 2*time.Hour)
	if err != nil || !r.Start.AsTime().Equal(now.Add(time.Hour)) || !r.End.AsTime().Equal(now.Add(3*time.Hour)) {
		t.Errorf("--start +1h --for 2h: %v, %v", r, err)
	}
	if _, err := c.window("room", "+1h", "+2h", time.Hour); err == nil {
		t.Error("--end and --for together were accepted")
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--addr", "127.0.0.1:1", "reserve", "--start", "soon"}, &out, &errOut); code != exitUsage {
		t.Errorf("a bad time: exit %d, want %d", code, exitUsage)
	}
	if code := run(context.Background(), []string{"--addr", "127.0.0.1:1", "--timeout", "1s", "get", "01a204ab-6318-7baf-a7ed-a35f0ef10590"}, &out, &errOut); code != exitUnavailable {
		t.Errorf("no server: exit %d, want %d: %s", code, exitUnavailable, errOut.String())
	}
}
