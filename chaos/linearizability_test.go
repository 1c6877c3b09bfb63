package chaos

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "reservation/proto/reservation/v1"
)

const (
	linClients   = 6           // clients of the checked calls
	linResources = 3           // resources per phase
	linTimeout   = time.Minute // for the search of one phase; past it, the phase is not proved
)

// linOutDir is where visualisations of failed checks go: $RESERVATION_CHAOS_OUT, or
// testdata/out in the package (ignored by git). t.TempDir would delete them.
func linOutDir(t *testing.T) string {
	dir := os.Getenv("RESERVATION_CHAOS_OUT")
	if dir == "" {
		dir = filepath.Join("testdata", "out")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkLinearizability checks every phase of h, adds the verdicts to report, and fails the
// test for each phase not proved linearizable.
func checkLinearizability(t *testing.T, h *LinHistory, report *table) {
	verdicts, err := h.Check(linOutDir(t), linTimeout)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range verdicts {
		failed := 0
		if v.Result != porcupine.Ok {
			failed = 1
			t.Errorf("linearizability, %s: %s", v.Phase, v)
		}
		report.rows = append(report.rows, [3]string{"linearizability, " + v.Phase, v.String(), map[bool]string{true: "ok", false: "FAIL"}[failed == 0]})
	}
	report.must("checked calls with an answer the model has no place for ("+fmt.Sprint(h.Unexpected())+")", len(h.Unexpected()))
}

// TestLinearizabilityModel: the model takes a history that is linearizable only because a
// Reserve without an answer took effect, and refuses one where a freed window was refused.
func TestLinearizabilityModel(t *testing.T) {
	op := func(client int, in linInput, call, ret int64, out linOutput) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
	}
	reserve := func(tag string, from, to int) linInput {
		return linInput{kind: linReserve, resource: "r", tag: tag, from: from, to: to}
	}
	ok, conflict, open := linOutput{result: resOK}, linOutput{result: resConflict}, linOutput{result: resOpen}
	listed := func(hs ...held) linOutput { return linOutput{result: resOK, held: hs} }

	good := []porcupine.Operation{
		op(0, reserve("a", 0, 2), 0, 100, open), // no answer, but it took effect
		op(1, linInput{kind: linQuery, resource: "r"}, 10, 20, listed(held{"a", 0, 2})),
		op(1, reserve("b", 1, 3), 30, 40, conflict),
	}
	if !porcupine.CheckOperations(resourceModel, good) {
		t.Error("a linearizable history was refused")
	}
	bad := []porcupine.Operation{
		op(0, reserve("a", 0, 2), 0, 10, ok),
		op(0, linInput{kind: linCancel, resource: "r", tag: "a"}, 20, 30, ok),
		op(1, linInput{kind: linQuery, resource: "r"}, 40, 50, listed()),
		op(1, reserve("b", 1, 3), 60, 70, conflict), // the window was listed free, then refused
	}
	if porcupine.CheckOperations(resourceModel, bad) {
		t.Error("a refusal of a window listed free was taken as linearizable")
	}
}

// TestLinearizabilityCheckerCatchesSplitBrain runs the checked workload against a broken
// target: two replicas on separate databases, taken as one service. Each books what the other
// has, so the checker must find the history not linearizable.
func TestLinearizabilityCheckerCatchesSplitBrain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	mysql, err := startIn(ctx, dir, "mysql", StartMariaDB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mysql.Kill)
	bin := filepath.Join(dir, "reservationd")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "reservation/cmd/reservationd").CombinedOutput(); err != nil {
		t.Fatalf("build reservationd: %v\n%s", err, out)
	}
	var replicas []*Replica
	for i, db := range []string{"split_a", "split_b"} {
		r, err := startLone(ctx, dir, bin, fmt.Sprint("lone-", i), mysql.Addr, db)
		if r != nil {
			t.Cleanup(func() {
				if r.conn != nil {
					r.conn.Close()
				}
				r.Kill()
			})
		}
		if err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, r)
	}

	h := NewLinHistory()
	h.Phase("split brain", 1)
	load, stop := context.WithTimeout(ctx, 3*time.Second)
	defer stop()
	var wg sync.WaitGroup
	for i := range linClients {
		wg.Go(func() { LinClient(load, i, replicas, h) })
	}
	wg.Wait()

	verdicts, err := h.Check(linOutDir(t), linTimeout)
	if err != nil {
		t.Fatal(err)
	}
	v := verdicts[0]
	t.Logf("split brain: %s", v)
	if v.Result != porcupine.Illegal {
		t.Fatalf("two replicas on separate databases: the checker found %s, want NOT linearizable", v)
	}
}

// startLone starts a reservationd with the local lock on its own database of the MariaDB at
// mysqlAddr.
func startLone(ctx context.Context, dir, bin, name, mysqlAddr, database string) (*Replica, error) {
	admin, err := sql.Open("mysql", "root@tcp("+mysqlAddr+")/")
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+database); err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	httpPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	r := &Replica{Addr: "127.0.0.1:" + strconv.Itoa(port)}
	env := []string{
		"RESERVATION_GRPC_ADDR=" + r.Addr,
		"RESERVATION_HTTP_ADDR=127.0.0.1:" + strconv.Itoa(httpPort),
		"RESERVATION_MYSQL_DSN=root@tcp(" + mysqlAddr + ")/" + database,
		"RESERVATION_LOCK=local",
		"RESERVATION_DRAIN=2s",
		"RESERVATION_LOG_LEVEL=warn",
	}
	if r.Proc, err = Start(name, bin, filepath.Join(dir, name+".log"), env); err != nil {
		return nil, err
	}
	if r.conn, err = grpc.NewClient(r.Addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return r, err
	}
	r.Client = pb.NewReservationServiceClient(r.conn)
	return r, r.WaitServing(ctx)
}
