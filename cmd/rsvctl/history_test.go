package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// TestHistoryAndCancelReason: cancel --reason records why, history lists every change oldest
// first with its actor and reason (a table, or -o json), and get of the cancelled reservation
// says when, by whom and why, exiting 3.
func TestHistoryAndCancelReason(t *testing.T) {
	clean(t, "")
	addr := serve(t)
	out, errs, code := rsvctl(t, addr, "reserve", "--user", "alice", "--resource", "room-1", "--start", "2030-03-01T14:00:00Z", "--for", "2h")
	if code != exitOK {
		t.Fatalf("reserve: exit %d: %s", code, errs)
	}
	id := uuidRE.FindString(out)
	if _, errs, code = rsvctl(t, addr, "update", id, "--note", "late check-in"); code != exitOK {
		t.Fatalf("update: exit %d: %s", code, errs)
	}
	if out, errs, code = rsvctl(t, addr, "cancel", id, "--reason", "guest called the desk"); code != exitOK || out != "reservation "+id+" cancelled\n" {
		t.Fatalf("cancel --reason: exit %d: %s%s", code, out, errs)
	}

	out, errs, code = rsvctl(t, addr, "history", id)
	if code != exitOK {
		t.Fatalf("history: exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	cells := regexp.MustCompile(`\s{2,}`)
	want := [][]string{
		{"OP", "ACTOR", "STATUS", "VERSION", "REASON"},
		{"CREATE", "alice", "PENDING", "1", ""},
		{"UPDATE", "alice", "PENDING", "2", ""},
		{"DELETE", "alice", "PENDING", "3", "guest called the desk"},
	}
	if len(lines) != len(want) {
		t.Fatalf("history prints %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, line := range lines {
		f := cells.Split(strings.TrimSpace(line), -1)
		if len(f) < 8 {
			t.Fatalf("history line %q: %d columns, want 8 or 9", line, len(f))
		}
		reason := ""
		if len(f) == 9 {
			reason = f[8]
		}
		got := []string{f[0], f[2], f[3], f[7], reason}
		if strings.Join(got, "|") != strings.Join(want[i], "|") {
			t.Errorf("history line %d: %q, want OP, ACTOR, STATUS, VERSION, REASON %q", i, line, want[i])
		}
		if i > 0 && (f[4] != "room-1" || f[5] != "2030-03-01 14:00 UTC" || f[6] != "2030-03-01 16:00 UTC") {
			t.Errorf("history line %d: %q, want room-1 from 2030-03-01 14:00 UTC to 16:00", i, line)
		}
	}

	out, _, code = rsvctl(t, addr, "-o", "json", "history", id)
	var last struct {
		Op     string `json:"op"`
		Actor  string `json:"actor"`
		Reason string `json:"reason"`
	}
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); code != exitOK || len(lines) != 3 || err != nil ||
		last.Op != "RESERVATION_UPDATE_TYPE_DELETE" || last.Actor != "alice" || last.Reason != "guest called the desk" {
		t.Fatalf("history -o json: exit %d, %d lines, last %+v (%v):\n%s", code, len(lines), last, err, out)
	}

	_, errs, code = rsvctl(t, addr, "get", id)
	if code != exitNotFound || !strings.Contains(errs, "was cancelled at ") || !strings.Contains(errs, `by "alice"`) ||
		!strings.Contains(errs, "reason: guest called the desk") {
		t.Errorf("get of the cancelled reservation: exit %d: %s; want 3, when, by alice, and the reason", code, errs)
	}
	if _, errs, code = rsvctl(t, addr, "history", "0193c0de-7a6b-7c2e-9f1a-2b3c4d5e6f70"); code != exitNotFound {
		t.Errorf("history of an unknown id: exit %d: %s; want 3", code, errs)
	}
	if _, errs, code = rsvctl(t, addr, "history", "room-1"); code != exitUsage || !strings.HasPrefix(errs, "rsvctl: ID ") {
		t.Errorf("history of a malformed id: exit %d: %s; want 2, naming ID", code, errs)
	}
}
