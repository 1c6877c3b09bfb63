package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"reservation/cache"
	"reservation/lock"
	"reservation/lock/locktest"
	"reservation/queue"
	"reservation/repo"
	"reservation/repo/repotest"
	"reservation/server"
	api "reservation/service"
)

// TestOverbooked feeds the capacity check stored histories, good and bad, and compares its
// count with the one worked out by hand: it must catch an overlap on a capacity-1 resource
// and a peak above the capacity, and must not count overlapping rows that never exceed it.
func TestOverbooked(t *testing.T) {
	db, _ := repotest.NewDB(t)
	ctx := t.Context()
	type row struct {
		resource   string
		start, end int  // hours from 2031-01-01
		expired    bool // a lapsed hold
	}
	cases := []struct {
		name       string
		capacities map[string]int // the resources' rows; a resource without one is capacity 1
		rows       []row
		want       int
	}{
		{"overlap on capacity 1", map[string]int{"r": 1}, []row{{"r", 0, 2, false}, {"r", 1, 3, false}}, 1},
		{"back to back", map[string]int{"r": 1}, []row{{"r", 0, 2, false}, {"r", 2, 4, false}}, 0},
		{"same start", map[string]int{"r": 1}, []row{{"r", 0, 2, false}, {"r", 0, 1, false}}, 2},
		{"other resources", map[string]int{"a": 1, "b": 1}, []row{{"a", 0, 2, false}, {"b", 1, 3, false}}, 0},
		{"capacity 2, peak 2 over four overlapping rows", map[string]int{"r": 2},
			[]row{{"r", 0, 1, false}, {"r", 1, 2, false}, {"r", 2, 3, false}, {"r", 0, 3, false}}, 0},
		{"capacity 2, peak 3", map[string]int{"r": 2}, []row{{"r", 0, 3, false}, {"r", 1, 3, false}, {"r", 2, 3, false}}, 1},
		{"capacity 2, the third a lapsed hold", map[string]int{"r": 2}, []row{{"r", 0, 3, false}, {"r", 1, 3, false}, {"r", 2, 3, true}}, 0},
		{"no resource row", nil, []row{{"r", 0, 2, false}, {"r", 1, 3, false}}, 1},
		{"a long reservation over a short one", map[string]int{"r": 1}, []row{{"r", 0, 100, false}, {"r", 50, 51, false}, {"r", 200, 201, false}}, 1},
		{"capacity 20, 21 at once", map[string]int{"r": 20}, func() []row {
			var rs []row
			for i := range 21 {
				rs = append(rs, row{"r", i, 30, false})
			}
			return rs
		}(), 1},
	}
	year := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, q := range []string{"DELETE FROM reservations", "DELETE FROM resources"} {
				if _, err := db.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			now := time.Now().UTC()
			for id, capacity := range c.capacities {
				if _, err := db.ExecContext(ctx, "INSERT INTO resources (id, version, max_span_us, created_at, capacity) VALUES (?, 1, 0, ?, ?)",
					id, now, capacity); err != nil {
					t.Fatal(err)
				}
			}
			for _, r := range c.rows {
				var expires any
				if r.expired {
					expires = now.Add(-time.Minute)
				}
				if _, err := db.ExecContext(ctx, `INSERT INTO reservations (id, user_id, resource_id, status, start_at, end_at, note, created_at, updated_at, version, expires_at)
					VALUES (?, 'u', ?, 1, ?, ?, '', ?, ?, 1, ?)`, uuid.NewString(), r.resource,
					year.Add(time.Duration(r.start)*time.Hour), year.Add(time.Duration(r.end)*time.Hour), now, now, expires); err != nil {
					t.Fatal(err)
				}
			}
			got, err := overbooked(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("overbooked = %d, want %d", got, c.want)
			}
		})
	}
}

// TestWorkloads runs spread, pool and capacity in one run against an in-process replica with
// reservationd's defaults (Redis lock, group commit, conflict cache, open catalogue) and
// against the MySQL floor, as a run of rsvbench does, and checks what they did against the
// stored rows. The pool and the capacity resources are small and asked for twice over, so
// that a run of two seconds fills them: POOL_FULL and RESERVATION_CONFLICT must both show among
// the refusals.
func TestWorkloads(t *testing.T) {
	db, dsn := repotest.NewDB(t)
	client := locktest.Client(t)
	locker := lock.NewRedis(client, lock.RedisOptions{Prefix: locktest.Prefix(t, client), TTL: lock.DefaultTTL, Wait: lock.DefaultWait,
		Logger: slog.New(slog.DiscardHandler)})
	d, err := server.New(t.Context(), db, locker, server.Options{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
		Drain: server.DefaultDrain, ReapInterval: repo.DefaultReapInterval, MaxMsgSize: server.DefaultMaxMsgSize,
		MaxStreams: server.DefaultMaxStreams, DefaultDeadline: server.DefaultDefaultDeadline,
		Feed: queue.Options{PollInterval: queue.DefaultPollInterval, StallBound: queue.DefaultStallBound,
			Buffer: queue.DefaultBuffer, Retention: queue.DefaultRetention},
		Store: repo.Options{RequestRetention: repo.DefaultRequestRetention, GroupCommit: repo.DefaultGroupCommit},
		API: api.Options{MaxDuration: api.DefaultMaxDuration, MinHold: api.DefaultMinHold, MaxHold: api.DefaultMaxHold,
			MaxBatch: api.DefaultMaxBatch, MaxFreeWindow: api.DefaultMaxFreeWindow},
		Cache: cache.Options{MaxEntries: cache.DefaultMaxEntries},
	})
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	t.Cleanup(func() { d.Close() })

	ctx := context.Background()
	targets := map[string]func() (target, error){
		"service": func() (target, error) { return newService(ctx, d.GRPCAddr(), dsn) },
		"mysql-floor": func() (target, error) {
			floor, err := repo.Open(ctx, dsn) // the test's database, beside the service's rows
			return mysqlFloorOn(floor), err
		},
	}
	var results []result
	for _, w := range []string{"spread", "pool", "capacity"} {
		for _, name := range []string{"service", "mysql-floor"} {
			cfg := config{clients: 4, duration: 2 * time.Second, seed: 1, capacity: 3, load: 0.7, prefix: "t-" + name + "-" + w + "-"}
			if w != "spread" {
				// 2 units, or 2 resources of capacity 3 (1 would do; 2 test the pick), asked for
				// twice over, the calendar rolling past a 6 h span in 12 or 36 calls: the calls of
				// two seconds fill them.
				cfg.resources, cfg.span, cfg.load = 2, 6*time.Hour, 2
			}
			tg, err := targets[name]()
			if err != nil {
				t.Fatal(err)
			}
			r, ran, err := runWorkload(ctx, tg, cfg, w)
			tg.close()
			if err != nil || !ran {
				t.Fatalf("%s, %s: ran %v, %v", name, w, ran, err)
			}
			results = append(results, r)
			if r.ok == 0 || len(r.errs) != 0 || r.over != 0 {
				t.Errorf("%s, %s: %d ok, errors %v, %d overbooked", name, w, r.ok, r.errs, r.over)
			}
			// The cost: the machine worked, and the server inserted at least the reservations
			// made and received their statements (whole-server counters: at least, not exactly).
			if !r.cpuKnown || r.busy <= 0 {
				t.Errorf("%s, %s: busy CPU %v (measured %v)", name, w, r.busy, r.cpuKnown)
			}
			if c := r.counters; c == nil || c["Handler_write"] < int64(r.ok) || c["Com_commit"] == 0 || c["Questions"] < int64(r.ok) || c["Bytes_received"] < int64(100*r.ok) {
				t.Errorf("%s, %s: %d ok, server counters %v", name, w, r.ok, c)
			}
			var stored int
			check(t, db, &stored, "SELECT COUNT(*) FROM reservations WHERE resource_id LIKE ?", cfg.prefix+"%")
			if stored != r.ok {
				t.Errorf("%s, %s: %d ok, %d stored", name, w, r.ok, stored)
			}
			switch w {
			case "pool":
				var outside int
				check(t, db, &outside, "SELECT COUNT(*) FROM reservations WHERE resource_id LIKE ? AND (pool_id <> ? OR resource_id NOT IN (?, ?))",
					cfg.prefix+"%", cfg.prefix+"pool", cfg.prefix+"u0", cfg.prefix+"u1")
				if outside != 0 || r.refused[reasonPoolFull] == 0 || len(r.refused) != 1 {
					t.Errorf("%s, pool: %d reservations outside the pool's units, refusals %v (want POOL_FULL only)", name, outside, r.refused)
				}
			case "capacity":
				var peak int // the stored rows' most at once, at some row's start
				check(t, db, &peak, `SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) n FROM reservations r JOIN reservations x
					ON x.resource_id = r.resource_id AND x.start_at <= r.start_at AND x.end_at > r.start_at WHERE r.resource_id LIKE ? GROUP BY r.id) p`, cfg.prefix+"%")
				if peak != 3 || r.refused[reasonConflict] == 0 || len(r.refused) != 1 {
					t.Errorf("%s, capacity 3: peak %d stored, refusals %v (want a full resource and RESERVATION_CONFLICT only)", name, peak, r.refused)
				}
			}
		}
	}

	var out bytes.Buffer
	report(&out, config{clients: 4, duration: 2 * time.Second, seed: 1}, results)
	t.Log(out.String())
	for _, want := range []string{"workload pool, 4 clients", "service refusals: POOL_FULL:", "mysql-floor refusals: POOL_FULL:",
		"service / mysql-floor: ok/s ", "service, in this run, 4 clients: spread ", "cpu µs/ok",
		"service server, per ok call: commits ", "mysql-floor server, per ok call: commits ", "\npool / spread: ok/s ", "\ncapacity / spread: ok/s "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// TestParseCPU: busy time is every /proc/stat field but idle and iowait, guest time (already
// in user) left out.
func TestParseCPU(t *testing.T) {
	s, ok := parseCPU("cpu  100 5 50 1000 20 3 2 1 40 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
	if !ok || s.busy != 100+5+50+3+2+1 || s.total != s.busy+1000+20 {
		t.Errorf("parsed %+v, %v", s, ok)
	}
	if d := busyTime(cpuSample{busy: 100}, cpuSample{busy: 350}); d != 2500*time.Millisecond {
		t.Errorf("250 jiffies = %v, want 2.5s", d)
	}
	for _, bad := range []string{"", "intr 1 2 3", "cpu 1 2 x 4 5"} {
		if _, ok := parseCPU(bad); ok {
			t.Errorf("parsed %q", bad)
		}
	}
	if _, ok := readCPU(); !ok {
		t.Error("no /proc/stat read on this machine")
	}
}

func TestParseClients(t *testing.T) {
	if got, err := parseClients("16, 64"); err != nil || len(got) != 2 || got[0] != 16 || got[1] != 64 {
		t.Errorf("16, 64: %v %v", got, err)
	}
	for _, bad := range []string{"", "0", "16,", "x"} {
		if _, err := parseClients(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func check(t *testing.T, db *sqlx.DB, dest any, query string, args ...any) {
	t.Helper()
	if err := db.GetContext(t.Context(), dest, query, args...); err != nil {
		t.Fatal(err)
	}
}

// TestSearchWorkload: the search workload puts a labelled catalogue in pools, books nights on
// it, then searches by selector, on the service and straight on the store; every search
// answers, and the report shows their latencies.
func TestSearchWorkload(t *testing.T) {
	db, dsn := repotest.NewDB(t)
	d, err := server.New(t.Context(), db, nil, server.Options{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
		Feed: queue.Options{PollInterval: queue.DefaultPollInterval},
	})
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	t.Cleanup(func() { d.Close() })
	ctx := context.Background()
	var results []result
	for _, name := range []string{"service", "mysql-floor"} {
		var tg target
		if name == "service" {
			tg, err = newService(ctx, d.GRPCAddr(), dsn)
		} else {
			var floor *sqlx.DB
			floor, err = repo.Open(ctx, dsn)
			tg = mysqlFloorOn(floor)
		}
		if err != nil {
			t.Fatal(err)
		}
		cfg := config{clients: 2, duration: time.Second, seed: 1, resources: 300, prefill: 100, span: 30 * 24 * time.Hour, prefix: "t-" + name + "-"}
		r, ran, err := runWorkload(ctx, tg, cfg, "search")
		tg.close()
		if err != nil || !ran {
			t.Fatalf("%s: ran %v, %v", name, ran, err)
		}
		if r.ok == 0 || len(r.errs) != 0 || len(r.reads["search"]) != r.ok || r.over != 0 {
			t.Errorf("%s: %d ok, %d searches, errors %v, %d overbooked", name, r.ok, len(r.reads["search"]), r.errs, r.over)
		}
		results = append(results, r)
	}
	var out bytes.Buffer
	report(&out, config{clients: 2, duration: time.Second, seed: 1}, results)
	for _, want := range []string{"workload search, 2 clients", "service search: ", "mysql-floor search: "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	t.Log(out.String())
}
