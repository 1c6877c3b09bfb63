package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"reservation/lock/locktest"
	"reservation/repo/repotest"
)

// TestREADMECurl replays the README's curl section against the binary, as written: the `$ curl
// …` lines of each console block of the section are run by bash, in order, with the README's
// 127.0.0.1:8080 replaced by the test's port and $ID set to the first reservation id answered,
// and their output must match the lines shown. In the shown JSON, "…" in a string stands for
// any text; key order and spacing do not matter. The blocks share one daemon, except a block
// whose first line is "# reservationd --flag value …": it gets a daemon of its own, with those
// flags, on a fresh database. Other lines that start with "#" are comments.
func TestREADMECurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("curl: %v (apt-get install curl)", err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "## The HTTP API with curl\n")
	if !ok {
		t.Fatal("README has no curl section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	type step struct {
		cmd  string
		want []string
	}
	type block struct {
		env   []string // the daemon's flags, as environment variables; nil: the shared daemon
		steps []step
	}
	var blocks []block
	steps := 0
	for rest := section; ; {
		_, text, found := strings.Cut(rest, "```console\n")
		if !found {
			break
		}
		text, rest, _ = strings.Cut(text, "```")
		var b block
		for i, line := range strings.Split(strings.TrimSpace(text), "\n") {
			if flags, ok := strings.CutPrefix(line, "# reservationd "); ok && i == 0 {
				b.env = flagsEnv(t, strings.Fields(flags))
			} else if cmd, ok := strings.CutPrefix(line, "$ "); ok {
				b.steps = append(b.steps, step{cmd: cmd})
			} else if len(b.steps) > 0 && !strings.HasPrefix(line, "#") {
				b.steps[len(b.steps)-1].want = append(b.steps[len(b.steps)-1].want, line)
			}
		}
		blocks = append(blocks, b)
		steps += len(b.steps)
	}
	if steps < 8 {
		t.Fatalf("%d commands in the README's curl section", steps)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := func(env ...string) *daemon {
		// The production lock, Redis, under a prefix of the daemon's own: the examples book the
		// same resource ids as other tests running beside this one.
		_, dsn := repotest.NewDB(t)
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil {
			t.Fatal(err)
		}
		d := startDaemon(t, append([]string{"RESERVATION_MYSQL_DSN=" + dsn, "RESERVATION_LOCK=redis",
			"RESERVATION_REDIS_ADDR=" + locktest.Addr(), "RESERVATION_REDIS_PREFIX=" + cfg.DBName + ":"}, env...)...)
		d.waitServing(t, ctx, d.dial(t))
		return d
	}
	var shared *daemon
	id := ""
	for _, b := range blocks {
		d := shared
		switch {
		case b.env != nil:
			d = start(b.env...)
		case shared == nil:
			shared = start()
			d = shared
		}
		for _, s := range b.steps {
			cmd := strings.ReplaceAll(s.cmd, "127.0.0.1:8080", d.http)
			sh := exec.CommandContext(ctx, "bash", "-c", cmd)
			sh.Env = append(os.Environ(), "ID="+id)
			out, err := sh.Output()
			if err != nil {
				t.Fatalf("%s: %v", s.cmd, err)
			}
			got := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
			if len(got) != len(s.want) {
				t.Errorf("%s\ngot:\n%s\nwant:\n%s", s.cmd, out, strings.Join(s.want, "\n"))
				continue
			}
			for i := range got {
				if err := matchLine(got[i], s.want[i]); err != nil {
					t.Errorf("%s\ngot:  %s\nwant: %s\n%v", s.cmd, got[i], s.want[i], err)
				}
			}
			if id == "" {
				var v struct{ Reservation struct{ ID string } }
				if json.Unmarshal([]byte(strings.Split(got[0], " → ")[0]), &v) == nil {
					id = v.Reservation.ID
				}
			}
		}
	}
}

// flagsEnv turns reservationd flags ("--catalogue strict", "--catalogue=strict") into the
// environment variables that set them.
func flagsEnv(t *testing.T, args []string) []string {
	var env []string
	for i := 0; i < len(args); i++ {
		name, ok := strings.CutPrefix(args[i], "--")
		if !ok {
			t.Fatalf("README: %q in a block's reservationd line is not a --flag", args[i])
		}
		name, value, hasValue := strings.Cut(name, "=")
		if !hasValue {
			if i+1 == len(args) {
				t.Fatalf("README: --%s in a block's reservationd line has no value", name)
			}
			i++
			value = args[i]
		}
		env = append(env, envName(name)+"="+value)
	}
	return env
}

var statusSuffix = regexp.MustCompile(` → (\d{3})$`)

// matchLine compares an output line with the README's: an optional " → <status>" suffix, and
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
		return fmt.Errorf("README's line is not JSON: %v", err)
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
		parts := strings.Split(w, "…")
		for i := range parts {
			parts[i] = regexp.QuoteMeta(parts[i])
		}
		if !ok || !regexp.MustCompile("^(?s)"+strings.Join(parts, ".*")+"$").MatchString(g) {
			return fmt.Errorf("%s: %v, want %q", at, got, w)
		}
	default:
		if got != want {
			return fmt.Errorf("%s: %v, want %v", at, got, want)
		}
	}
	return nil
}

// TestHTTPStreamErrors: a stream's errors have the unary shape; one that fails after its 200
// was sent (a listener gone, the replica shutting down) ends with the error line and leaves no
// "superfluous response.WriteHeader call" in the log.
func TestHTTPStreamErrors(t *testing.T) {
	_, dsn := repotest.NewDB(t)
	d := startDaemon(t, "RESERVATION_MYSQL_DSN="+dsn, "RESERVATION_LOCK=local")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d.waitServing(t, ctx, d.dial(t))
	base := "http://" + d.http
	c := &http.Client{Timeout: 10 * time.Second}

	// Refused before the stream started: the status, and the unary shape.
	code, b := httpJSON(t, c, "GET", base+"/v1/reservations:query?start=2030-01-02T00:00:00Z&end=2030-01-01T00:00:00Z", nil)
	if code != 400 || field(t, b, "error", "code") != 3.0 || field(t, b, "error", "details") == nil {
		t.Errorf("Query with end before start: %d %s; want 400 with {\"error\": status with details}", code, b)
	}

	// A listener that goes away, many times over.
	for range 5 {
		lctx, lcancel := context.WithCancel(ctx)
		req, _ := http.NewRequestWithContext(lctx, "GET", base+"/v1/changes", nil)
		resp, err := c.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("Listen: %v %v", resp, err)
		}
		lcancel()
		resp.Body.Close()
	}

	// A listener open at shutdown gets the UNAVAILABLE line. (Its 200 came once it subscribed.)
	resp, err := c.Get(base + "/v1/changes?after_seq=0")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("Listen: %v %v", resp, err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(resp.Body)
	var last string
	for lines.Scan() {
		last = lines.Text()
	}
	resp.Body.Close()
	if !strings.HasPrefix(last, `{"error":{"code":14`) {
		t.Errorf("Listen at shutdown ended with %q, want the UNAVAILABLE line", last)
	}
	select {
	case <-d.exited:
	case <-ctx.Done():
		t.Fatal("still running after SIGTERM")
	}
	if strings.Contains(d.logs.String(), "superfluous") {
		t.Errorf("the log has superfluous WriteHeader calls:\n%s", d.logs.String())
	}
}
