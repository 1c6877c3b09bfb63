// Package ops holds the files for running reservationd: Prometheus alerting rules
// (prometheus/alerts.yml, unit-tested by prometheus/alerts_test.yml) and a Grafana dashboard
// (grafana/reservationd.json). This test checks them with Debian's promtool.
package ops

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// promtool finds promtool, fetching Debian's when there is none (scripts/promtool.sh).
func promtool(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("bash", "../scripts/promtool.sh").Output()
	if err != nil {
		var stderr []byte
		if e, ok := err.(*exec.ExitError); ok {
			stderr = e.Stderr
		}
		t.Fatalf("scripts/promtool.sh: %v\n%s", err, stderr)
	}
	return strings.TrimSpace(string(out))
}

func TestAlertRules(t *testing.T) {
	bin := promtool(t)
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
	}
}

// Every alert has a test case in alerts_test.yml that expects it to fire.
func TestEveryAlertIsTested(t *testing.T) {
	rules, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile("prometheus/alerts_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(rules), "\n") {
		name, ok := strings.CutPrefix(strings.TrimSpace(line), "- alert: ")
		if !ok {
			continue
		}
		n++
		// A firing case: an alertname line followed by expected alerts that are not [].
		fires := false
		for _, c := range strings.Split(string(tests), "alertname: "+name)[1:] {
			if !strings.HasPrefix(strings.TrimSpace(c), ", exp_alerts: []") && !strings.HasPrefix(strings.TrimSpace(c), "exp_alerts: []") {
				fires = true
			}
		}
		if !fires {
			t.Errorf("alert %s has no test case in which it fires", name)
		}
	}
	if n < 7 {
		t.Errorf("%d alerts in alerts.yml", n)
	}
}

// The dashboard is JSON with a query on every panel.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana/reservationd.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string
		Panels []struct {
			Type, Title string
			Targets     []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || len(d.Panels) < 10 {
		t.Fatalf("dashboard uid %q with %d panels", d.UID, len(d.Panels))
	}
	for _, p := range d.Panels {
		if p.Type != "row" && (len(p.Targets) == 0 || p.Targets[0].Expr == "") {
			t.Errorf("panel %q has no query", p.Title)
		}
	}
}
