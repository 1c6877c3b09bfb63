package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"reservation/auth"
	"reservation/buildinfo"
)

// clean unsets rsvctl's environment variables for the test, so that the machine's do not
// change what is compared, and shows times in tz.
func clean(t *testing.T, tz string) {
	for _, k := range []string{"RSVCTL_ADDR", "RSVCTL_TOKEN", "RSVCTL_TZ"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	if tz != "" {
		t.Setenv("RSVCTL_TZ", tz)
	}
}

// transcript runs each command line and writes it as a console session: the line, what it
// printed (output, then errors) and its exit code.
func transcript(t *testing.T, lines [][]string, replace ...string) string {
	t.Helper()
	var b strings.Builder
	for _, args := range lines {
		var out, errOut bytes.Buffer
		code := run(context.Background(), args, &out, &errOut)
		fmt.Fprintf(&b, "$ rsvctl %s\n%s%s[exit %d]\n\n", quote(args), out.String(), errOut.String(), code)
	}
	return strings.NewReplacer(replace...).Replace(b.String())
}

func quote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = a
		if a == "" || strings.ContainsAny(a, " \"'") {
			q[i] = fmt.Sprintf("%q", a)
		}
	}
	return strings.Join(q, " ")
}

// Help, versions and mistakes on the command line: none of them reaches a server.
func TestCommandLine(t *testing.T) {
	clean(t, "")
	got := transcript(t, [][]string{
		{}, {"help"}, {"-h"}, {"--help"},
		{"reserve", "--help"}, {"help", "confirm"}, {"token", "--help"}, {"free", "-h"},
		{"--version"}, {"version"},
		{"reserv"}, {"lsten", "--resource", "room-1"}, {"frobnicate"},
		{"reserve", "--resourse", "room-1"}, {"query", "--stat", "pending"}, {"confirm", "0193c0de-7a6b-7c2e-9f1a-2b3c4d5e6f70", "--verison", "1"},
		{"reserve", "--resource", "room-1", "--start", "2030-05-01", "--for", "1x"},
		{"reserve", "--resource", "room-1", "--start", "tomorrow", "--for", "1d"},
		{"reserve", "--resource", "room-1", "--start", "+1h", "--end", "+2h", "--for", "1h"},
		{"reserve"}, {"reserve", "--resource", "room-1", "--start", "2030-05-01 14:00"},
		{"reserve", "--resource", "room-1", "--start", "2030-05-01", "--for", "1d", "--status", "done"},
		{"reserve", "--resource"},
		{"confirm"}, {"confirm", "a", "b", "--version", "1"}, {"query", "room-1"}, {"free"},
		{"-o", "yaml", "query"}, {"--tz", "Mars/Base", "query"}, {"--timeout", "soon", "query"},
		{"batch", "-f", filepath.Join("testdata", "no-such-file.json")},
	}, buildinfo.Read().String(), "<build>")
	golden(t, "cli", got)
}

// Times and durations as typed, read in three zones, and shown as the tables show them.
func TestTimeParsing(t *testing.T) {
	now := time.Date(2030, 3, 30, 12, 0, 0, 0, time.UTC) // the eve of summer time in Berlin
	var b strings.Builder
	for _, zone := range []string{"UTC", "Europe/Berlin", "America/New_York"} {
		tz, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		c := &cli{now: now, tz: tz, fields: map[string]string{}}
		fmt.Fprintf(&b, "--tz %s, now %s\n", zone, now.Format(time.RFC3339))
		for _, in := range []string{"now", "+1h", "-30m", "+1d", "+2w", "+1d12h", "2030-05-01", "2030-05-01 14:00", "2030-05-01 14:00:30",
			"2030-05-01T14:00", "2030-05-01T14:00:00Z", "2030-05-01T14:00:00+02:00", "2030-03-31 02:30", "tomorrow", "2030-05-01 14", "+1x"} {
			got, err := c.parseTime("start", in)
			if err != nil {
				fmt.Fprintf(&b, "  %-28q error: %v\n", in, err)
				continue
			}
			fmt.Fprintf(&b, "  %-28q %s  shown as %s\n", in, got.UTC().Format(time.RFC3339), c.formatTime(got))
		}
	}
	b.WriteString("durations\n")
	for _, in := range []string{"90m", "1d", "2w", "1d12h", "1.5d", "2h30m", "45s", "1h0m0s", "0", "-1d", "+3h", "1y", "d", "", "1e9w"} {
		d, err := parseDuration(in)
		if err != nil {
			fmt.Fprintf(&b, "  %-8q error: %v\n", in, err)
			continue
		}
		fmt.Fprintf(&b, "  %-8q %-14s shown as %s\n", in, d, formatDuration(d))
	}
	b.WriteString("lengths\n")
	for _, d := range []time.Duration{165*time.Hour + 71724*time.Microsecond, 90 * time.Minute, 500 * time.Millisecond, 36 * time.Hour, 0} {
		fmt.Fprintf(&b, "  %-16s shown as %s\n", d, formatDuration(d))
	}
	golden(t, "times", b.String())
}

// Errors the server returns name the flags the user typed, each once, with times in --tz.
func TestServerErrors(t *testing.T) {
	clean(t, "Europe/Berlin")
	addr := serve(t)
	got := transcript(t, [][]string{
		{"--addr", addr, "reserve", "--user", "alice", "--resource", "room-1", "--start", "2030-05-01 14:00", "--for", "2h"},
		{"--addr", addr, "reserve", "--user", "bob", "--resource", "room-1", "--start", "2030-05-01 15:00", "--for", "3h"},
		{"--addr", addr, "reserve", "--user", "bob", "--resource", "room-1", "--start", "2030-05-01 15:00", "--end", "2030-05-01 14:00"},
		{"--addr", addr, "reserve", "--user", "bob", "--resource", "room 1\x01", "--start", "0999-05-01", "--for", "1h"},
		{"--addr", addr, "reserve", "--user", "bob", "--resource", "room-2", "--start", "2030-05-01", "--for", "1h", "--hold", "2d"},
		{"--addr", addr, "confirm", "not-an-id"},
		{"--addr", addr, "get", "0193c0de-7a6b-7c2e-9f1a-2b3c4d5e6f70"},
		{"--addr", addr, "free", "--resource", "room-1", "--start", "2030-05-01", "--end", "2032-05-01"},
		{"--addr", addr, "free", "--resource", "room-1", "--start", "2030-05-01", "--end", "2030-05-02"},
	}, addr, "<addr>")
	golden(t, "server-errors", got)
}

// The connection hints: an HTTP port given for the gRPC one, a host without a port, and a
// token missing or unknown with auth on.
func TestConnectionHints(t *testing.T) {
	clean(t, "UTC")
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.NotFound(w, nil) }))
	defer web.Close()
	httpAddr := strings.TrimPrefix(web.URL, "http://")

	for addr, want := range map[string]string{
		"localhost": "localhost:50051", "127.0.0.1": "127.0.0.1:50051", "[::1]": "[::1]:50051", "::1": "[::1]:50051",
		"localhost:8080": "localhost:8080", "dns:///rsv.example:443": "dns:///rsv.example:443", "unix:/run/rsv.sock": "unix:/run/rsv.sock",
	} {
		if got := target(addr); got != want {
			t.Errorf("target(%q) = %q, want %q", addr, got, want)
		}
	}

	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.json")
	os.WriteFile(tokens, []byte(fmt.Sprintf(`{"tokens": [{"sha256": %q, "user": "alice", "role": "user"}]}`, auth.Hash("alices-token"))), 0o600)
	a, err := auth.Load(tokens)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, a.ServerOptions()...)
	id := "0193c0de-7a6b-7c2e-9f1a-2b3c4d5e6f70"
	got := transcript(t, [][]string{
		{"--addr", httpAddr, "get", id},
		{"--addr", "127.0.0.1:1", "get", id},
		{"--addr", addr, "get", id},
		{"--addr", addr, "get", id, "--token", "someone-elses"},
		{"--addr", addr, "get", id, "--token", "alices-token"},
	}, httpAddr, "<http-addr>", addr, "<addr>")
	golden(t, "connection", got)
}
