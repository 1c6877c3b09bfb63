package main

import "testing"

// move: a new window, a new end alone, another resource; a conflict that changes nothing; the
// mistakes on the command line and from the server, each naming the flag typed.
func TestMove(t *testing.T) {
	clean(t, "Europe/Berlin")
	addr := serve(t)
	out, errs, code := rsvctl(t, addr, "reserve", "--user", "alice", "--resource", "room-1", "--start", "2030-05-01T12:00:00Z", "--for", "2h", "--status", "confirmed", "--note", "board")
	if code != exitOK {
		t.Fatalf("reserve: exit %d: %s", code, errs)
	}
	id := uuidRE.FindString(out)
	if _, errs, code = rsvctl(t, addr, "reserve", "--user", "bob", "--resource", "room-1", "--start", "2030-05-01T15:00:00Z", "--for", "1h"); code != exitOK {
		t.Fatalf("reserve: exit %d: %s", code, errs)
	}
	move := func(args ...string) []string { return append([]string{"--addr", addr, "move", id}, args...) }
	got := transcript(t, [][]string{
		{"move", "--help"},
		move("--start", "2030-05-01 15:00", "--for", "2h"), // over its own window, to touch bob's start
		move("--end", "2030-05-01 17:30"),                  // into bob's
		move("--resource", "room-2", "--reason", "projector broken"),
		move("--start", "2030-05-01 16:00", "--end", "2030-05-01 15:00"),
		move("--end", "2030-05-01 14:00"), // before the stored start
		move("--end", "2030-05-01 18:00", "--version", "1"),
		move("--start", "2030-05-01 15:00"), move("--for", "1h"), move(), move("--end", "+1h", "--for", "1h"),
		{"--addr", addr, "move", "0193c0de-7a6b-7c2e-9f1a-2b3c4d5e6f70", "--resource", "room-3"},
		{"--addr", addr, "get", id},
	}, addr, "<addr>")
	golden(t, "move", got)
}
