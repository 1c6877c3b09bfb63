package repo

import (
	"fmt"
	"testing"

	"github.com/go-sql-driver/mysql"

	"reservation"
)

// A request id's lookup under the group's locks refuses its own job only when the id was used
// with other parameters. A deadlock or a certification conflict met by the lookup is classified
// into a reservation.Error too, but it has rolled the group's transaction back: taking it for
// the job's refusal let the other jobs' statements run outside any transaction, and on Galera
// and Group Replication multi-primary their CREATE change and history rows were lost.
func TestOnlyAReusedRequestIDIsARefusal(t *testing.T) {
	reused := &reservation.Error{Code: reservation.EINVALID, Message: "request id reused",
		Fields: reservation.Violations{{Field: "request_id", Description: "was used by a call with other parameters"}}}
	if !isRefusal(reused) {
		t.Error("a reused request id is not taken for the job's refusal")
	}
	for _, n := range []uint16{1213, 1205, 1180, 3101, 1047} {
		err := classify(fmt.Errorf("look up request %q: %w", "r1", &mysql.MySQLError{Number: n, Message: "aborted"}))
		if _, ok := err.(*reservation.Error); !ok {
			t.Fatalf("classify(%d) = %T, want a *reservation.Error (what made the old check wrong)", n, err)
		}
		if isRefusal(err) {
			t.Errorf("error %d from the lookup is taken for the job's refusal: it ends the group's transaction", n)
		}
	}
	if isRefusal(nil) {
		t.Error("nil is a refusal")
	}
}
