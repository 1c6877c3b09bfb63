package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"reservation"
	"reservation/lock/locktest"
	pb "reservation/proto/reservation/v1"
	"reservation/repo/repotest"
)

// moveState is a reservation as an acknowledged call left it.
type moveState struct {
	resource   string
	start, end time.Time
	note       string
	version    int64
}

func stateOf(r *pb.Reservation) moveState {
	return moveState{r.GetResourceId(), r.GetStart().AsTime(), r.GetEnd().AsTime(), r.GetNote(), r.GetVersion()}
}

func (s moveState) String() string {
	return fmt.Sprintf("%s %s to %s %q v%d", s.resource, reservation.FormatTime(s.start), reservation.FormatTime(s.end), s.note, s.version)
}

// moveLedger is what acknowledged calls say each reservation must be now.
type moveLedger struct {
	mu        sync.Mutex
	last      map[string]moveState     // by id: the acknowledged state of the highest version
	versions  map[string]map[int64]int // by id: how many calls acknowledged each version
	updates   map[string]int           // by id: acknowledged Updates (moves and notes)
	cancelled map[string]bool
	unsure    map[string]bool // a call on it ended without a clear answer
	codes     map[string]int  // "Move OK", "Reserve FailedPrecondition", ...
	odd       []string        // the messages of the first answers neither OK nor a refusal
}

func newMoveLedger() *moveLedger {
	return &moveLedger{last: map[string]moveState{}, versions: map[string]map[int64]int{}, updates: map[string]int{},
		cancelled: map[string]bool{}, unsure: map[string]bool{}, codes: map[string]int{}}
}

// ack records the answer of a call on id: r, what it returned, when err is nil.
func (l *moveLedger) ack(call, id string, r *pb.Reservation, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	code := status.Code(err)
	l.codes[call+" "+code.String()]++
	if err != nil {
		if code != codes.FailedPrecondition {
			if id != "" {
				l.unsure[id] = true // it may have been written or not
			}
			if len(l.odd) < 5 {
				l.odd = append(l.odd, call+": "+err.Error())
			}
		}
		return
	}
	id = r.GetId()
	switch call {
	case "Cancel":
		l.cancelled[id] = true
		return
	case "Move", "Note":
		l.updates[id]++
	}
	if l.versions[id] == nil {
		l.versions[id] = map[int64]int{}
	}
	l.versions[id][r.GetVersion()]++
	if s := stateOf(r); s.version > l.last[id].version {
		l.last[id] = s
	}
}

// check compares the stored rows and the feed with the ledger, through q (the database, or a
// transaction that changed it), and returns every difference: a booking acknowledged and
// not cancelled that is not stored, one stored that was never acknowledged, one whose row is
// not its last acknowledged state (a move half done, or undone), a version acknowledged
// twice, and a reservation whose feed does not end with its row or misses an Update.
func (l *moveLedger) check(t *testing.T, q sqlx.Queryer) []string {
	t.Helper()
	var rows []struct {
		ID         string    `db:"id"`
		ResourceID string    `db:"resource_id"`
		Start      time.Time `db:"start_at"`
		End        time.Time `db:"end_at"`
		Note       string    `db:"note"`
		Version    int64     `db:"version"`
		Updates    int       `db:"updates"`
		Last       string    `db:"last"`
	}
	// Each row with its number of UPDATE changes and the snapshot of its last change.
	if err := sqlx.Select(q, &rows, `SELECT r.id, r.resource_id, r.start_at, r.end_at, r.note, r.version,
		(SELECT COUNT(*) FROM reservation_changes c WHERE c.reservation_id = r.id AND c.op = 2) AS updates,
		COALESCE((SELECT c.snapshot FROM reservation_changes c WHERE c.reservation_id = r.id ORDER BY c.id DESC LIMIT 1), '') AS last
		FROM reservations r`); err != nil {
		t.Fatal(err)
	}
	var problems []string
	stored := map[string]bool{}
	for _, r := range rows {
		stored[r.ID] = true
		got := moveState{r.ResourceID, r.Start.UTC(), r.End.UTC(), r.Note, r.Version}
		want, acked := l.last[r.ID]
		switch {
		case l.unsure[r.ID]:
		case !acked || l.cancelled[r.ID]:
			problems = append(problems, fmt.Sprintf("%s is stored (%v) but not acknowledged, or cancelled", r.ID, got))
		case got != want:
			problems = append(problems, fmt.Sprintf("%s is stored as %v, its last acknowledged state is %v", r.ID, got, want))
		case r.Updates != l.updates[r.ID]:
			problems = append(problems, fmt.Sprintf("%s: %d UPDATE changes recorded, %d acknowledged", r.ID, r.Updates, l.updates[r.ID]))
		default:
			var snap struct {
				ResourceID string    `json:"resource_id"`
				Start      time.Time `json:"start"`
				End        time.Time `json:"end"`
				Version    int64     `json:"version"`
			}
			if err := json.Unmarshal([]byte(r.Last), &snap); err != nil || snap.ResourceID != r.ResourceID || !snap.Start.Equal(r.Start) || !snap.End.Equal(r.End) || snap.Version != r.Version {
				problems = append(problems, fmt.Sprintf("%s: its last change %s is not its row %v (%v)", r.ID, r.Last, got, err))
			}
		}
	}
	for id := range l.last {
		if !stored[id] && !l.cancelled[id] && !l.unsure[id] {
			problems = append(problems, fmt.Sprintf("%s was acknowledged (last %v) and is not stored", id, l.last[id]))
		}
	}
	for id, vs := range l.versions {
		for v, n := range vs {
			if n > 1 {
				problems = append(problems, fmt.Sprintf("%s: version %d acknowledged by %d calls", id, v, n))
			}
		}
	}
	return problems
}

// Concurrent moves and reserves on the same three resources, over three replicas, with Redis
// up and with Redis unreachable (the database alone guards). Each writer books windows and
// moves its own reservations back and forth between windows and resources, and every writer
// also moves, and changes the note of, a few shared reservations, so that moves race each
// other on one reservation and Updates race moves that take the reservation to another
// resource. Checked in SQL afterwards: no two stored reservations overlap, no acknowledged
// booking is lost, and every reservation is stored exactly as its last acknowledged call left
// it (a refused move left the old window, an acknowledged one the new: never both, never
// neither), its feed holding one UPDATE per acknowledged Update and ending with its row. A
// negative control then corrupts rows inside a transaction and sees the check report them.
func TestConcurrentMovesAndReserves(t *testing.T) {
	t.Parallel()
	for name, newLocker := range concurrentLockers() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db, dsn := repotest.NewDB(t)
			prefix := locktest.Prefix(t, locktest.Client(t))
			replicas := replicasOn(t, dsn, 3, func() reservation.Locker { return newLocker(t, prefix) })
			const resources, slots = 3, 48 // half-hour slots from base: few, so that windows collide
			window := func(rng *rand.Rand) (string, float64, float64) {
				from := rng.IntN(slots - 1)
				to := min(from+1+rng.IntN(4), slots)
				return fmt.Sprint("hot-", rng.IntN(resources)), float64(from) / 2, float64(to) / 2
			}
			ledger := newMoveLedger()
			var shared []string // moved by every writer
			for i := range resources {
				r := reserve(t, replicas[0].client, booking(fmt.Sprint("hot-", i), 0, 1))
				ledger.ack("Reserve", "", r, nil)
				shared = append(shared, r.GetId())
			}

			const writers, ops = 24, 30
			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(w), 18))
					c := replicas[w%len(replicas)].client
					var mine []string // this writer's own reservations, not cancelled
					for range ops {
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						switch p := rng.IntN(20); {
						case p < 6 || len(mine) == 0: // book
							res, from, to := window(rng)
							resp, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: booking(res, from, to)})
							ledger.ack("Reserve", "", resp.GetReservation(), err)
							if err == nil {
								mine = append(mine, resp.GetReservation().GetId())
							}
						case p < 7: // cancel one of its own
							k := rng.IntN(len(mine))
							id := mine[k]
							mine = append(mine[:k], mine[k+1:]...)
							resp, err := c.Cancel(ctx, &pb.CancelRequest{Id: id})
							ledger.ack("Cancel", id, resp.GetReservation(), err)
						case p < 9: // change a shared one's note
							id := shared[rng.IntN(len(shared))]
							resp, err := c.Update(ctx, &pb.UpdateRequest{Id: id, Note: fmt.Sprintf("writer %d", w)})
							ledger.ack("Note", id, resp.GetReservation(), err)
						default: // move a shared one, or one of its own, to another window, often on another resource
							id := mine[rng.IntN(len(mine))]
							if p < 12 {
								id = shared[rng.IntN(len(shared))]
							}
							res, from, to := window(rng)
							resp, err := c.Update(ctx, moveTo(id, from, to, res))
							ledger.ack("Move", id, resp.GetReservation(), err)
						}
						cancel()
					}
				}()
			}
			wg.Wait()

			t.Logf("outcomes: %v", ledger.codes)
			for _, m := range ledger.odd {
				t.Error(m)
			}
			for k, n := range ledger.codes {
				if _, code, _ := strings.Cut(k, " "); code != codes.OK.String() && code != codes.FailedPrecondition.String() {
					t.Errorf("%d calls: %s", n, k)
				}
			}
			for _, k := range []string{"Move OK", "Move FailedPrecondition", "Reserve OK", "Reserve FailedPrecondition", "Note OK"} {
				if ledger.codes[k] == 0 {
					t.Errorf("no %q: the workload should exercise it (%v)", k, ledger.codes)
				}
			}
			var lockDown int64
			for _, r := range replicas {
				lockDown += r.store.Stats().LockUnavailable
			}
			if (name == "redis unreachable") != (lockDown > 0) {
				t.Errorf("%d writes went ahead without the lock", lockDown)
			}
			if n := overlaps(t, db); n != 0 {
				t.Errorf("%d pairs of stored reservations overlap", n)
			}
			for _, p := range ledger.check(t, db) {
				t.Error(p)
			}
			if n := count(t, db, "SELECT COUNT(*) FROM (SELECT 1 FROM reservation_changes GROUP BY resource_id, resource_version HAVING COUNT(*) > 1) d"); n != 0 {
				t.Errorf("%d resource versions recorded twice", n)
			}
			// Every change names, as moved from, the resource of the reservation's change before
			// it when that one is another, and no resource otherwise: so the listeners of the
			// resource a move left hear it, and no one hears a change twice. (A reservation's
			// changes are written one after another under its row lock, so in the order of their
			// ids.)
			var movesAcross int
			if err := db.Get(&movesAcross, "SELECT COUNT(*) FROM reservation_changes WHERE moved_from <> ''"); err != nil {
				t.Fatal(err)
			}
			if n := count(t, db, `SELECT COUNT(*) FROM reservation_changes c WHERE c.moved_from <> COALESCE((
				SELECT CASE WHEN p.resource_id = c.resource_id THEN '' ELSE p.resource_id END FROM reservation_changes p
				WHERE p.reservation_id = c.reservation_id AND p.id < c.id ORDER BY p.id DESC LIMIT 1), '')`); n != 0 || movesAcross == 0 {
				t.Errorf("%d changes name another resource as moved from than the one they left (of %d moves across resources)", n, movesAcross)
			}
			var moved int
			for _, id := range shared {
				if ledger.last[id].resource != fmt.Sprint("hot-", slices.Index(shared, id)) {
					moved++
				}
			}
			t.Logf("%d of %d shared reservations ended on another resource", moved, len(shared))

			// The negative control: the check must see a row half moved, a booking lost and
			// a move that did not happen.
			tx, err := db.Beginx()
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			var ids []string
			if err := tx.Select(&ids, "SELECT id FROM reservations ORDER BY id LIMIT 3"); err != nil || len(ids) < 3 {
				t.Fatalf("rows for the negative control: %v, %v", ids, err)
			}
			corrupt := []string{
				"UPDATE reservations SET end_at = end_at + INTERVAL 30 MINUTE WHERE id = ?", // half moved
				"DELETE FROM reservations WHERE id = ?",                                     // lost
				"UPDATE reservations SET resource_id = 'elsewhere' WHERE id = ?",            // moved without an acknowledgement
			}
			for i, stmt := range corrupt {
				if _, err := tx.Exec(stmt, ids[i]); err != nil {
					t.Fatal(err)
				}
			}
			if problems := ledger.check(t, tx); len(problems) != len(corrupt) {
				t.Errorf("negative control: the check reported %d problems, want %d: %q", len(problems), len(corrupt), problems)
			}
		})
	}
}
