package main

import (
	"strings"
	"testing"
)

// TestSeriesCommands: series books a weekly series (all or none; with --skip-conflicts the
// free ones, listing the others), keeping 09:00 in --tz across DST; cancel-series cancels from
// an occurrence on.
func TestSeriesCommands(t *testing.T) {
	clean(t, "")
	addr := serve(t)
	var b strings.Builder
	step := func(args ...string) (string, int) {
		out, errs, code := rsvctl(t, addr, args...)
		b.WriteString("$ rsvctl " + quote(args) + "\n" + out + errs + "[exit " + string(rune('0'+code)) + "]\n\n")
		return out, code
	}
	if _, code := step("reserve", "--user", "bob", "--resource", "room-1", "--start", "2030-03-15T10:30:00Z", "--for", "1h"); code != exitOK {
		t.Fatalf("reserve: exit %d", code)
	}
	if _, code := step("series", "--user", "alice", "--resource", "room-1", "--start", "2030-03-01T10:00:00Z", "--for", "1h", "--rrule", "FREQ=WEEKLY;COUNT=4"); code != exitConflict {
		t.Errorf("series over a taken week: exit %d, want %d", code, exitConflict)
	}
	out, code := step("series", "--user", "alice", "--resource", "room-1", "--start", "2030-03-01T10:00:00Z", "--for", "1h", "--rrule", "FREQ=WEEKLY;COUNT=4",
		"--skip-conflicts", "--exdate", "2030-03-22T10:00:00Z", "--request-id", "weekly-1")
	if code != exitOK {
		t.Fatalf("series --skip-conflicts: exit %d", code)
	}
	id := uuidRE.FindString(strings.TrimPrefix(out, "series "))
	if again, code := step("series", "--user", "alice", "--resource", "room-1", "--start", "2030-03-01T10:00:00Z", "--for", "1h", "--rrule", "FREQ=WEEKLY;COUNT=4",
		"--skip-conflicts", "--exdate", "2030-03-22T10:00:00Z", "--request-id", "weekly-1"); code != exitOK || again != out {
		t.Errorf("the retry printed another outcome (exit %d)", code)
	}
	step("cancel-series", id, "--from", "2030-03-08T10:00:00Z", "--reason", "moved")
	step("query", "--resource", "room-1")
	step("cancel-series", id, "--from", "2030-03-08T10:00:00Z")
	// 09:00 in Paris, before and after summer time (31 March 2030).
	step("--tz", "Europe/Paris", "series", "--user", "alice", "--resource", "room-2", "--start", "2030-03-25 09:00", "--for", "1h", "--rrule", "FREQ=WEEKLY;COUNT=2")
	step("series", "--resource", "room-1", "--start", "2030-03-01T10:00:00Z", "--for", "1h", "--rrule", "FREQ=YEARLY")
	step("series", "--resource", "room-1", "--start", "2030-03-01T10:00:00Z", "--for", "1h", "--rrule", "FREQ=DAILY")
	step("series", "--resource", "room-1", "--start", "2030-03-01T10:00:00Z", "--for", "1h")
	step("cancel-series", "not-an-id")
	golden(t, "series", b.String())
}
