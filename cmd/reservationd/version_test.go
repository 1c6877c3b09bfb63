package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"reservation/lock/locktest"
	"reservation/repo/repotest"
)

// The binary says which build it is: version, VCS revision and the Go version, on the command
// line, in reservation_build_info and as the OpenAPI document's info.version.
func TestVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds reservationd and runs it against a database: not run under -short (make check); make test runs it")
	}
	bin := filepath.Join(t.TempDir(), "reservationd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	var version string
	for _, arg := range []string{"--version", "version"} {
		out, err := exec.Command(bin, arg).CombinedOutput()
		line := string(out)
		if err != nil || !strings.HasPrefix(line, "reservationd ") || !strings.Contains(line, " (revision ") || !strings.HasSuffix(line, ") "+runtime.Version()+"\n") {
			t.Fatalf("reservationd %s: %v: %q", arg, err, line)
		}
		version = strings.Fields(line)[1]
	}

	_, dsn := repotest.NewDB(t)
	d := startDaemon(t, "RESERVATION_MYSQL_DSN="+dsn, "RESERVATION_REDIS_ADDR="+locktest.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d.waitServing(t, ctx, d.dial(t))
	get := func(path string) []byte {
		resp, err := http.Get("http://" + d.http + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
		return b
	}
	var doc struct {
		Info  struct{ Version string }
		Paths map[string]any
	}
	if err := json.Unmarshal(get("/openapi.json"), &doc); err != nil || !strings.HasPrefix(doc.Info.Version, version) || doc.Paths["/v1/reservations"] == nil {
		t.Errorf("/openapi.json: info.version %q (want the build's, %s), %d paths, %v", doc.Info.Version, version, len(doc.Paths), err)
	}
	want := fmt.Sprintf(`reservation_build_info{goversion=%q,revision=`, runtime.Version())
	metrics := string(get("/metrics"))
	if !strings.Contains(metrics, want) || !strings.Contains(metrics, fmt.Sprintf(`,version=%q} 1`, version)) {
		t.Errorf("/metrics has no %s…,version=%q} 1", want, version)
	}
}
