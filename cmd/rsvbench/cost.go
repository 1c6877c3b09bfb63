package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// The cost of a run: whole-machine CPU from /proc/stat, and a MySQL server's status counters
// (SHOW GLOBAL STATUS), each read before the clients start and after they stop, and divided by
// the ok calls. Both are whole-machine and whole-server: on a shared machine they include the
// work of anything else running then.

// userHZ is the unit of /proc/stat's times (USER_HZ): 100 on every Linux Go runs on.
const userHZ = 100

// cpuSample is the machine's CPU time so far, busy and in all, in jiffies.
type cpuSample struct{ busy, total int64 }

// readCPU reads the first line of /proc/stat: user nice system idle iowait irq softirq steal...
// Idle and iowait are the time not working; the rest is busy. ok is false where there is no
// /proc/stat (not Linux).
func readCPU() (cpuSample, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSample{}, false
	}
	return parseCPU(string(b))
}

func parseCPU(stat string) (cpuSample, bool) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return cpuSample{}, false
	}
	var s cpuSample
	for i, v := range f[1:] {
		if i >= 8 { // guest and guest_nice are already in user and nice
			break
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return cpuSample{}, false
		}
		s.total += n
		if i != 3 && i != 4 { // idle, iowait
			s.busy += n
		}
	}
	return s, true
}

// busyTime is the CPU time the machine worked between a and b.
func busyTime(a, b cpuSample) time.Duration {
	return time.Duration(b.busy-a.busy) * time.Second / userHZ
}

// dbCounters are the SHOW GLOBAL STATUS counters a run reports, per ok call, in this order,
// with the name the report gives each.
var dbCounters = []struct{ name, label string }{
	{"Com_commit", "commits"},
	{"Questions", "statements"},
	{"Com_select", "SELECTs"},
	{"Com_insert", "INSERTs"},
	{"Com_update", "UPDATEs"},
	// Rows written, updated and deleted by the storage engines (temporary tables included).
	{"Handler_write", "rows written"},
	{"Handler_update", "rows updated"},
	{"Handler_delete", "rows deleted"},
	{"Bytes_received", "bytes received"},
	{"Innodb_data_fsyncs", "fsyncs"},
}

// statusCounters reads dbCounters from db's server.
func statusCounters(ctx context.Context, db *sqlx.DB) (map[string]int64, error) {
	rows, err := db.QueryContext(ctx, "SHOW GLOBAL STATUS")
	if err != nil {
		return nil, fmt.Errorf("SHOW GLOBAL STATUS: %w", err)
	}
	defer rows.Close()
	want := map[string]bool{}
	for _, c := range dbCounters {
		want[c.name] = true
	}
	out := map[string]int64{}
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			return nil, fmt.Errorf("SHOW GLOBAL STATUS: %w", err)
		}
		if want[name] {
			if n, err := strconv.ParseInt(value, 10, 64); err == nil {
				out[name] = n
			}
		}
	}
	return out, rows.Err()
}

// costMeter samples the cost of a run of target t: CPU always, the server's counters when t
// has a MySQL connection to read them through.
type costMeter struct {
	db       *sqlx.DB
	cpu      cpuSample
	cpuOK    bool
	counters map[string]int64
}

// statusDB is a target with a MySQL connection to its server (the service's --verify-dsn, the
// MySQL floor's own).
type statusDB interface{ statusDB() *sqlx.DB }

func startCost(ctx context.Context, t target) *costMeter {
	m := &costMeter{}
	if s, ok := t.(statusDB); ok {
		m.db = s.statusDB()
	}
	if m.db != nil {
		c, err := statusCounters(ctx, m.db)
		if err != nil {
			fmt.Fprintln(os.Stderr, "rsvbench: server counters:", err)
			m.db = nil
		}
		m.counters = c
	}
	m.cpu, m.cpuOK = readCPU() // last: the counters' own read is not in the run
	return m
}

// stop reads the samples again and records the differences in r.
func (m *costMeter) stop(ctx context.Context, r *result) {
	cpu, ok := readCPU()
	if ok && m.cpuOK {
		r.busy = busyTime(m.cpu, cpu)
		r.cpuKnown = true
	}
	if m.db == nil {
		return
	}
	c, err := statusCounters(ctx, m.db)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rsvbench: server counters:", err)
		return
	}
	r.counters = map[string]int64{}
	for k, v := range c {
		r.counters[k] = v - m.counters[k]
	}
}

// cpuPerOK is the machine's busy CPU per ok call, in µs, or "-".
func (r result) cpuPerOK() string {
	if !r.cpuKnown || r.ok == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", float64(r.busy.Microseconds())/float64(r.ok))
}

// countersPerOK prints the server's counters per ok call: "commits 0.25, statements 6.1, ...".
func (r result) countersPerOK() string {
	if r.counters == nil || r.ok == 0 {
		return ""
	}
	var s []string
	for _, c := range dbCounters {
		v := float64(r.counters[c.name]) / float64(r.ok)
		if c.name == "Bytes_received" {
			s = append(s, fmt.Sprintf("%s %.0f", c.label, v))
		} else {
			s = append(s, fmt.Sprintf("%s %.2f", c.label, v))
		}
	}
	return strings.Join(s, ", ")
}
