package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The binary says which build it is: version, VCS revision and the Go version.
func TestVersion(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "reservationd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, arg := range []string{"--version", "version"} {
		out, err := exec.Command(bin, arg).CombinedOutput()
		line := string(out)
		if err != nil || !strings.HasPrefix(line, "reservationd ") || !strings.Contains(line, "(revision ") || !strings.HasSuffix(line, " "+runtime.Version()+"\n") {
			t.Errorf("reservationd %s: %v: %q", arg, err, line)
		}
	}
}
