package main

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"reservation/repo/repotest"
)

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
