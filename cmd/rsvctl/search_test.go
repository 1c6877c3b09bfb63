package main

import (
	"strings"
	"testing"
)

// search lists the resources a selector picks that are free for a window, or each one's
// earliest window of a length, and a pool's first unit free; a malformed selector is exit 2
// naming --selector and the byte.
func TestSearch(t *testing.T) {
	clean(t, "")
	addr := serve(t)
	for _, args := range [][]string{
		{"resource", "put", "room-101", "--pool", "deluxe-king", "--label", "view=sea", "--label", "beds=2"},
		{"resource", "put", "room-102", "--pool", "deluxe-king", "--label", "view=sea", "--label", "beds=1"},
		{"resource", "put", "room-201", "--label", "view=garden", "--label", "beds=2", "--capacity", "2"},
		{"reserve", "--user", "alice", "--resource", "room-101", "--start", "2030-05-01 00:00", "--end", "2030-05-03 00:00"},
	} {
		if out, errOut, code := rsvctl(t, addr, args...); code != 0 {
			t.Fatalf("%v: exit %d, %s%s", args, code, out, errOut)
		}
	}
	out, errOut, code := rsvctl(t, addr, "search", "--selector", "beds>=2", "--start", "2030-05-02", "--end", "2030-05-04")
	want := `RESOURCE  POOL  START                 END                   LENGTH  AVAILABLE
room-201        2030-05-02 00:00 UTC  2030-05-04 00:00 UTC  2d      2
`
	if code != 0 || out != want {
		t.Errorf("search a window: exit %d, %s%s\nwant:\n%s", code, out, errOut, want)
	}
	out, errOut, code = rsvctl(t, addr, "search", "--selector", "view in (sea, garden)", "--start", "2030-05-01", "--end", "2030-05-10", "--length", "2d", "--step", "1d")
	want = `RESOURCE  POOL         START                 END                   LENGTH  AVAILABLE
room-101  deluxe-king  2030-05-03 00:00 UTC  2030-05-05 00:00 UTC  2d      1
room-102  deluxe-king  2030-05-01 00:00 UTC  2030-05-03 00:00 UTC  2d      1
room-201               2030-05-01 00:00 UTC  2030-05-03 00:00 UTC  2d      2
`
	if code != 0 || out != want {
		t.Errorf("search a length: exit %d, %s%s\nwant:\n%s", code, out, errOut, want)
	}
	out, errOut, code = rsvctl(t, addr, "search", "--pool", "deluxe-king", "--start", "2030-05-01", "--end", "2030-05-02")
	if code != 0 || !strings.Contains(out, "room-102  deluxe-king") || strings.Contains(out, "room-101") {
		t.Errorf("search a pool: exit %d, %s%s; want room-102", code, out, errOut)
	}
	_, errOut, code = rsvctl(t, addr, "search", "--selector", "view in (sea", "--start", "2030-05-01", "--end", "2030-05-02")
	if code != 2 || !strings.Contains(errOut, "--selector") || !strings.Contains(errOut, "at byte 13") {
		t.Errorf("a malformed selector: exit %d, %q; want 2 naming --selector at byte 13", code, errOut)
	}
	_, errOut, code = rsvctl(t, addr, "search", "--start", "2030-05-01", "--end", "2030-05-02")
	if code != 2 || !strings.Contains(errOut, "--selector or --pool is required") {
		t.Errorf("neither --selector nor --pool: exit %d, %q", code, errOut)
	}
}
