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
