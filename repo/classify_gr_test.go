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

// A member leaving its group, or out of it, refuses the transaction and writes nothing: the
// call is UNAVAILABLE (the next try goes to the primary), and the failover connector drops the
// connection as it does on a read-only refusal.
func TestClassifyGroupReplicationMemberLeaving(t *testing.T) {
	for _, me := range []*mysql.MySQLError{
		{Number: 3799, Message: "The Group Replication plugin is stopping, therefore new transactions are not allowed to start."},
		{Number: 3796, Message: "The option group_replication_consistency cannot be used on the current member state."},
		{Number: 3100, Message: "Error on observer while running replication hook 'before_commit'."},
	} {
		err := fmt.Errorf("begin: %w", me)
		if got := reservation.ErrorCode(classify(err)); got != reservation.EUNAVAILABLE {
			t.Errorf("classify(%d) code = %v, want EUNAVAILABLE", me.Number, got)
		}
		if !isReadOnly(err) {
			t.Errorf("%d does not make the failover connector leave the host", me.Number)
		}
	}
}
