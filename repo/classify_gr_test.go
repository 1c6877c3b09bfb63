package repo

import (
	"fmt"
	"testing"

	"github.com/go-sql-driver/mysql"

	"reservation"
)

// What a multi-primary Group Replication group answers a transaction that lost to another
// member's (seen in chaos.TestGroupReplicationMultiPrimary): 3101 at COMMIT when certification
// failed, 1180 when the transaction was aborted for a remote one being applied. Inside inTx
// both are retried like a deadlock; a call that still meets one is ABORTED, never internal.
func TestClassifyGroupReplicationConflicts(t *testing.T) {
	for _, me := range []*mysql.MySQLError{
		{Number: 3101, Message: "Plugin instructed the server to rollback the current transaction."},
		{Number: 1180, SQLState: [5]byte{'H', 'Y', '0', '0', '0'}, Message: "Got error 149 - 'Lock deadlock; Retry transaction' during COMMIT"},
	} {
		err := fmt.Errorf("commit: %w", me)
		if !retryable(err) {
			t.Errorf("%d is not retried inside a transaction", me.Number)
		}
		if got := reservation.ErrorCode(classify(err)); got != reservation.EABORTED {
			t.Errorf("classify(%d) code = %v, want EABORTED", me.Number, got)
		}
	}
}
