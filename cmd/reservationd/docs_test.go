package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"reservation/lock/locktest"
	"reservation/repo/repotest"
)

// sessionMarker, on the line before a ```sh block of a doc, says that TestDocSessions replays
// the block. Such a block pastes into bash as written (after the README's PATH line): its
// commands are plain lines, what each prints follows it as "#> " lines, and other "#" lines
// are comments. A first line "# reservationd --flag value …" names the flags of the daemon the
// session needs.
const sessionMarker = "<!-- replayed by TestDocSessions -->"

// docSessions lists the docs that hold replayed sessions, each with how many it must have at
// least: a doc that lost its marker, or a block, fails the test rather than go unchecked.
var docSessions = map[string]int{
	"README.md":         3, // the first booking (rsvctl), the grpcurl and curl examples
	"docs/api.md":       1,
	"docs/inventory.md": 3, // a hotel, a car park, the strict catalogue
	"docs/series.md":    1,
	"docs/feed.md":      1,
	"docs/rsvctl.md":    1,
}

// TestREADMEIsShort keeps the README a front door: what does not fit goes to docs/.
func TestREADMEIsShort(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n > 250 {
		t.Errorf("README.md has %d lines, more than 250: move the detail to docs/", n)
	}
}

type session struct {
	name  string   // file:line
	env   []string // the daemon's flags, as environment variables
	steps []sessionStep
}

type sessionStep struct {
	cmd  string
	want []string
}

// readSessions returns the replayed sessions of one doc.
func readSessions(t *testing.T, doc string) []session {
	b, err := os.ReadFile(filepath.Join("../..", doc))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var out []session
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != sessionMarker {
			continue
		}
		if i+1 == len(lines) || lines[i+1] != "```sh" {
			t.Fatalf("%s:%d: %s is not followed by a ```sh line", doc, i+1, sessionMarker)
		}
		s := session{name: fmt.Sprintf("%s:%d", doc, i+2)}
		cont := false
		for i += 2; i < len(lines) && lines[i] != "```"; i++ {
			line := lines[i]
			switch {
			case cont:
				s.steps[len(s.steps)-1].cmd += "\n" + line
			case strings.HasPrefix(line, "# reservationd ") && len(s.steps) == 0:
				s.env = flagsEnv(t, strings.Fields(strings.TrimPrefix(line, "# reservationd ")))
			case line == "#>" || strings.HasPrefix(line, "#> "):
				if len(s.steps) == 0 {
					t.Fatalf("%s:%d: output before any command", doc, i+1)
				}
				last := &s.steps[len(s.steps)-1]
				last.want = append(last.want, strings.TrimPrefix(strings.TrimPrefix(line, "#>"), " "))
			case strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "":
			default:
				s.steps = append(s.steps, sessionStep{cmd: line})
			}
			cont = len(s.steps) > 0 && !strings.HasPrefix(line, "#") && unfinished(s.steps[len(s.steps)-1].cmd)
		}
		if i == len(lines) {
			t.Fatalf("%s: the session at line %s has no closing ```", doc, s.name)
		}
		shown := 0
		for _, st := range s.steps {
			shown += len(st.want)
		}
		if shown == 0 {
			t.Fatalf("%s: the session shows no output to compare", s.name)
		}
		out = append(out, s)
	}
	return out
}

// unfinished reports whether a shell command goes on on the next line: it ends with a
// backslash, or a quote is still open.
func unfinished(cmd string) bool {
	var quote rune
	escaped := false
	for _, r := range cmd {
		switch {
		case escaped:
			escaped = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			}
		case r == '\\':
			escaped = true
		case quote == '"':
			if r == '"' {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		}
	}
	return quote != 0 || escaped
}

// TestDocSessions replays the sessions of the README and docs/ (the blocks after sessionMarker)
// as a reader would: each in one bash, with rsvctl (built from ./cmd/rsvctl) and grpcurl
// (scripts/grpcurl.sh) on the PATH,
// against a reservationd binary of its own on a fresh database, and what each command prints
// must match the "#> " lines under it. So every session can be run again, and in any order,
// from an empty database (`make reset`), and sets the ids it uses itself.
//
// What a reader's machine changes is mapped: the documented addresses (127.0.0.1:50051, the
// gRPC port; 127.0.0.1:8080, the HTTP port) to the daemon's; a reservation id shown in a doc to
// the one printed at its place (the same one each time it appears); a time within a day of now
// (a booking from now on, when a change was made) to the one printed. In a line of JSON, "…" in
// a string stands for any text, and key order and spacing do not matter; in other lines (such
// as grpcurl's indented JSON) "…" stands for any text. Times are shown in UTC unless the session sets RSVCTL_TZ.
func TestDocSessions(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("curl: %v (apt-get install curl)", err)
	}
	if _, err := exec.LookPath("jq"); err != nil {
		t.Fatalf("jq: %v (apt-get install jq): the sessions keep the ids they make with it", err)
	}
	bin := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", bin, "../rsvctl").CombinedOutput(); err != nil {
		t.Fatalf("build rsvctl: %v\n%s", err, out)
	}
	// grpcurl: the one on PATH, or one the script builds, pinned, from the Go module proxy.
	grpcurl, err := exec.Command("bash", "../../scripts/grpcurl.sh").Output()
	if err != nil {
		t.Fatalf("scripts/grpcurl.sh: %v", err)
	}
	if err := os.Symlink(strings.TrimSpace(string(grpcurl)), filepath.Join(bin, "grpcurl")); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RSVCTL_") && !strings.HasPrefix(kv, "PATH=") && !strings.HasPrefix(kv, "TZ=") {
			env = append(env, kv)
		}
	}
	env = append(env, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "TZ=UTC")

	for doc, least := range docSessions {
		sessions := readSessions(t, doc)
		if len(sessions) < least {
			t.Errorf("%s: %d sessions marked %q, want at least %d", doc, len(sessions), sessionMarker, least)
		}
		for _, s := range sessions {
			t.Run(s.name, func(t *testing.T) {
				t.Parallel() // each on a database, a Redis prefix and ports of its own
				replay(t, s, env)
			})
		}
	}
}

// replay runs one session against a daemon of its own and compares what each step printed.
func replay(t *testing.T, s session, env []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The production lock, Redis, under a prefix of the daemon's own: the sessions book the
	// same resource ids as other tests running beside this one.
	_, dsn := repotest.NewDB(t)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, append([]string{"RESERVATION_MYSQL_DSN=" + dsn, "RESERVATION_LOCK=redis",
		"RESERVATION_REDIS_ADDR=" + locktest.Addr(), "RESERVATION_REDIS_PREFIX=" + cfg.DBName + ":"}, s.env...)...)
	d.waitServing(t, ctx, d.dial(t))

	const end = "@@end of step@@"
	to := strings.NewReplacer("127.0.0.1:50051", d.addr, "127.0.0.1:8080", d.http)
	back := strings.NewReplacer(d.addr, "127.0.0.1:50051", d.http, "127.0.0.1:8080")
	var script strings.Builder
	script.WriteString("exec 2>&1\n")
	for _, st := range s.steps {
		fmt.Fprintf(&script, "%s\necho '%s'\n", to.Replace(st.cmd), end)
	}
	sh := exec.CommandContext(ctx, "bash", "--norc", "--noprofile")
	// rsvctl's default address is the documented gRPC port: point it at the daemon's (a session
	// that sets RSVCTL_ADDR gets the daemon's too, through the mapping above).
	// A slice of its own: env is shared by the sessions, which run in parallel.
	sh.Env, sh.Stdin = slices.Concat(env, []string{"RSVCTL_ADDR=" + d.addr}), strings.NewReader(script.String())
	out, err := sh.Output()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	printed := strings.Split(back.Replace(string(out)), end+"\n")
	if len(printed) != len(s.steps)+1 {
		t.Fatalf("%d steps, %d outputs:\n%s", len(s.steps), len(printed)-1, out)
	}
	ids := map[string]string{} // an id shown in the doc: the one printed
	for i, st := range s.steps {
		text := strings.TrimSuffix(printed[i], "\n")
		var got []string
		if text != "" {
			got = strings.Split(text, "\n")
		}
		ok := len(got) == len(st.want)
		why := fmt.Errorf("%d lines printed, %d shown", len(got), len(st.want))
		for j := 0; ok && j < len(got); j++ {
			if why = sessionLine(got[j], st.want[j], ids); why != nil {
				ok = false
			}
		}
		if !ok {
			t.Errorf("%s\n--- printed\n%s\n--- the doc shows\n%s\n%v", st.cmd, text, strings.Join(st.want, "\n"), why)
		}
	}
}

// sessionLine compares one printed line with the doc's: JSON as values, other text with the
// doc's ids and near times standing for the printed ones.
func sessionLine(got, want string, ids map[string]string) error {
	if strings.HasPrefix(want, " → ") || json.Valid([]byte(strings.TrimSuffix(want, statusSuffix.FindString(want)))) {
		return matchLine(got, want)
	}
	wantIDs, gotIDs := uuidRE.FindAllString(want, -1), uuidRE.FindAllString(got, -1)
	if len(wantIDs) != len(gotIDs) {
		return fmt.Errorf("%d ids printed, %d shown", len(gotIDs), len(wantIDs))
	}
	for k, w := range wantIDs {
		if id, ok := ids[w]; ok && id != gotIDs[k] {
			return fmt.Errorf("the doc's %s stands for %s, printed %s", w, id, gotIDs[k])
		}
		ids[w] = gotIDs[k]
		want = strings.Replace(want, w, gotIDs[k], 1)
	}
	// A time printed that is within a day of now is the time of a booking from now on, or of a
	// change: the doc's time at its place stands for it.
	// Each is replaced at its own place, in one pass: a doc's time may read like another
	// printed one (15:30 standing for 16:30 while 16:30 stands for 17:30).
	wantAt, gotTimes := shownTime.FindAllStringIndex(want, -1), shownTime.FindAllString(got, -1)
	if len(wantAt) == len(gotTimes) {
		var b strings.Builder
		last := 0
		for k, g := range gotTimes {
			at, err := time.Parse("2006-01-02 15:04", g[:16])
			if err == nil && at.Sub(time.Now()).Abs() < 24*time.Hour {
				b.WriteString(want[last:wantAt[k][0]])
				b.WriteString(g)
				last = wantAt[k][1]
			}
		}
		b.WriteString(want[last:])
		want = b.String()
	}
	got, want = strings.TrimRight(got, " "), strings.TrimRight(want, " ")
	if got == want || strings.Contains(want, "…") && wildcard(want).MatchString(got) {
		return nil
	}
	return fmt.Errorf("printed %q\nshown   %q", got, want)
}

// wildcard is a regexp of text in which "…" stands for any text.
func wildcard(s string) *regexp.Regexp {
	parts := strings.Split(s, "…")
	for i := range parts {
		parts[i] = regexp.QuoteMeta(parts[i])
	}
	return regexp.MustCompile("^(?s)" + strings.Join(parts, ".*") + "$")
}

var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// shownTime is a time as rsvctl shows it: 2030-05-01 14:00 CEST, or with seconds.
var shownTime = regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d(?::\d\d)? [A-Z][A-Za-z0-9+-]*`)

// flagsEnv turns reservationd flags ("--catalogue strict", "--catalogue=strict") into the
// environment variables that set them.
func flagsEnv(t *testing.T, args []string) []string {
	var env []string
	for i := 0; i < len(args); i++ {
		name, ok := strings.CutPrefix(args[i], "--")
		if !ok {
			t.Fatalf("doc: %q in a session's reservationd line is not a --flag", args[i])
		}
		name, value, hasValue := strings.Cut(name, "=")
		if !hasValue {
			if i+1 == len(args) {
				t.Fatalf("doc: --%s in a session's reservationd line has no value", name)
			}
			i++
			value = args[i]
		}
		env = append(env, envName(name)+"="+value)
	}
	return env
}

var statusSuffix = regexp.MustCompile(` → (\d{3})$`)

// matchLine compares an output line with the doc's: an optional " → <status>" suffix, and
// JSON compared as values.
func matchLine(got, want string) error {
	if strings.HasPrefix(want, " → ") { // after a stream's last line, which ends with a newline
		if got != want {
			return fmt.Errorf("status %q, want %q", got, want)
		}
		return nil
	}
	gs, ws := statusSuffix.FindString(got), statusSuffix.FindString(want)
	if gs != ws {
		return fmt.Errorf("status %q, want %q", gs, ws)
	}
	var g, w any
	if err := json.Unmarshal([]byte(strings.TrimSuffix(got, gs)), &g); err != nil {
		return fmt.Errorf("output is not JSON: %v", err)
	}
	if err := json.Unmarshal([]byte(strings.TrimSuffix(want, ws)), &w); err != nil {
		return fmt.Errorf("the doc's line is not JSON: %v", err)
	}
	return matchJSON("", g, w)
}

func matchJSON(at string, got, want any) error {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return fmt.Errorf("%s: %v, want %v", at, got, want)
		}
		for k, wv := range w {
			if err := matchJSON(at+"."+k, g[k], wv); err != nil {
				return err
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Errorf("%s: %v, want %v", at, got, want)
		}
		for i := range w {
			if err := matchJSON(fmt.Sprintf("%s[%d]", at, i), g[i], w[i]); err != nil {
				return err
			}
		}
	case string:
		g, ok := got.(string)
		if !ok || !wildcard(w).MatchString(g) {
			return fmt.Errorf("%s: %v, want %q", at, got, w)
		}
	default:
		if got != want {
			return fmt.Errorf("%s: %v, want %v", at, got, want)
		}
	}
	return nil
}

// TestREADMELayoutListsEachFolder keeps the README's layout table whole: every top-level folder
// the repository tracks has one row, and no row names a folder twice or one that is gone.
func TestREADMELayoutListsEachFolder(t *testing.T) {
	out, err := exec.Command("git", "-C", "../..", "ls-files").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	tracked := map[string]bool{}
	for _, path := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if dir, _, ok := strings.Cut(path, "/"); ok && !strings.HasPrefix(dir, ".") {
			tracked[dir] = true
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, layout, ok := strings.Cut(string(readme), "\n## Layout\n")
	if !ok {
		t.Fatal("README.md has no Layout section")
	}
	layout, _, _ = strings.Cut(layout, "\n## ")
	rows := map[string]int{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9_-]+)/`").FindAllStringSubmatch(layout, -1) {
		rows[m[1]]++
	}
	for dir := range tracked {
		if rows[dir] != 1 {
			t.Errorf("README.md's layout table has %d rows for %s/, want 1", rows[dir], dir)
		}
	}
	for dir := range rows {
		if !tracked[dir] {
			t.Errorf("README.md's layout table lists %s/, which the repository does not have", dir)
		}
	}
}

// TestSessionLineTimesInOnePass: the doc's times stand for the printed ones place by place,
// also when a doc's time reads like another printed one (the doc written an hour earlier).
func TestSessionLineTimesInOnePass(t *testing.T) {
	h := time.Now().UTC().Truncate(time.Hour)
	f := func(t time.Time) string { return t.Format("2006-01-02 15:04") + " UTC" }
	want := "from " + f(h.Add(-30*time.Minute)) + " to " + f(h.Add(30*time.Minute))
	got := "from " + f(h.Add(30*time.Minute)) + " to " + f(h.Add(90*time.Minute))
	if err := sessionLine(got, want, map[string]string{}); err != nil {
		t.Error(err)
	}
	if err := sessionLine("from "+f(h)+" UTC", want, map[string]string{}); err == nil {
		t.Error("a line with fewer times matched")
	}
}
