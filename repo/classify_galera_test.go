package repo

import (
	"fmt"
	"testing"

	"github.com/go-sql-driver/mysql"

	"reservation"
)

// A Galera node that is joining or cut off from the primary component answers 1047 to
// every query: the call is UNAVAILABLE (try another replica), not an internal error. The
// Galera chaos run (chaos.TestGaleraChaos) meets it on a restarted node.
func TestClassifyGaleraNodeNotReady(t *testing.T) {
	err := fmt.Errorf("look up request %q: %w", "r1", &mysql.MySQLError{Number: 1047, SQLState: [5]byte{'0', '8', 'S', '0', '1'}, Message: "WSREP has not yet prepared node for application use"})
	if got := reservation.ErrorCode(classify(err)); got != reservation.EUNAVAILABLE {
		t.Errorf("classify(1047) code = %v, want EUNAVAILABLE", got)
	}
	if got := reservation.ErrorCode(classify(&mysql.MySQLError{Number: 1064})); got == reservation.EUNAVAILABLE {
		t.Errorf("classify(1064) = EUNAVAILABLE, want it left an internal error")
	}
}

// A read outside a retried transaction that met a lock wait timeout (on Galera: a causal read
// while the cluster stalled on a dead node, seen in chaos.TestGaleraChaos) is ABORTED, which a
// client retries; inside inTx the same error is still retried.
func TestClassifyLockWaitIsAborted(t *testing.T) {
	for _, n := range []uint16{1205, 1213} {
		err := fmt.Errorf("look up request: %w", &mysql.MySQLError{Number: n, Message: "Lock wait timeout exceeded; try restarting transaction"})
		got := classify(err)
		if reservation.ErrorCode(got) != reservation.EABORTED {
			t.Errorf("classify(%d) code = %v, want EABORTED", n, reservation.ErrorCode(got))
		}
		if !retryable(got) {
			t.Errorf("classify(%d) is no longer retryable inside a transaction", n)
		}
	}
}
