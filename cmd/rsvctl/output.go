package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "reservation/proto/reservation/v1"
)

// Exit codes, for scripts to branch on.
const (
	exitOK          = 0
	exitError       = 1 // anything not listed below
	exitUsage       = 2 // the command line or the request is wrong (INVALID_ARGUMENT)
	exitNotFound    = 3
	exitConflict    = 4 // the window is taken, or the reservation is in the wrong state (FAILED_PRECONDITION)
	exitStale       = 5 // expected version not current, or a concurrent writer won (ABORTED)
	exitUnavailable = 6 // the service or its database is down, or the deadline passed: retry later
	exitDenied      = 7 // UNAUTHENTICATED or PERMISSION_DENIED
	exitFeed        = 8 // Listen: cursor no longer kept (OUT_OF_RANGE) or too slow (RESOURCE_EXHAUSTED)
)

var exitCodes = map[codes.Code]int{
	codes.InvalidArgument: exitUsage, codes.NotFound: exitNotFound, codes.FailedPrecondition: exitConflict,
	codes.Aborted: exitStale, codes.Unavailable: exitUnavailable, codes.DeadlineExceeded: exitUnavailable,
	codes.Unauthenticated: exitDenied, codes.PermissionDenied: exitDenied, codes.OutOfRange: exitFeed,
	codes.ResourceExhausted: exitFeed,
}

// fail explains err to a person and returns the exit code for it.
func (c *cli) fail(err error) int {
	if errors.Is(err, errUsage) {
		fmt.Fprintln(c.errOut, "rsvctl:", strings.TrimPrefix(err.Error(), "usage: "))
		return exitUsage
	}
	st, ok := status.FromError(err)
	if !ok {
		fmt.Fprintln(c.errOut, "rsvctl:", err)
		return exitError
	}
	fmt.Fprintf(c.errOut, "rsvctl: %s: %s\n", words(st.Code().String()), st.Message())
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fmt.Fprintf(c.errOut, "  %s: %s\n", v.GetField(), v.GetDescription())
			}
		case *errdetails.ErrorInfo:
			printConflicts(c.errOut, d.GetMetadata())
		}
	}
	if code, ok := exitCodes[st.Code()]; ok {
		return code
	}
	return exitError
}

// words spells a code's name for people: FailedPrecondition is "failed precondition".
func words(camel string) string {
	var b strings.Builder
	for i, r := range camel {
		if i > 0 && 'A' <= r && r <= 'Z' {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return strings.ToLower(b.String())
}

// printConflicts lists the reservations in the way, from a conflict's ErrorInfo.
func printConflicts(w io.Writer, md map[string]string) {
	n, _ := strconv.Atoi(md["conflict_count"])
	if n == 0 {
		return
	}
	fmt.Fprintln(w, "in the way:")
	tw := newTable(w, "ITEM", "ID", "START", "END")
	for i := range n {
		k := fmt.Sprintf("conflict_%d_", i)
		tw.row(md[k+"item"], md[k+"id"], md[k+"start"], md[k+"end"])
	}
	tw.flush()
	if md["conflicts_truncated"] == "true" {
		fmt.Fprintln(w, "and more")
	}
}

// reservations prints reservations as a table, or one JSON object per line.
func (c *cli) reservations(rs ...*pb.Reservation) error {
	if c.json {
		for _, r := range rs {
			c.printJSON(r)
		}
		return nil
	}
	tw := newTable(c.out, "ID", "RESOURCE", "USER", "STATUS", "START", "END", "VERSION", "EXPIRES", "NOTE")
	for _, r := range rs {
		tw.row(r.Id, r.ResourceId, r.UserId, statusName(r.Status), formatTime(r.Start), formatTime(r.End),
			fmt.Sprint(r.Version), formatTime(r.ExpiresAt), strings.ReplaceAll(r.Note, "\n", " "))
	}
	return tw.flush()
}

func (c *cli) printJSON(m proto.Message) {
	b, _ := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	fmt.Fprintf(c.out, "%s\n", b)
}

func statusName(s pb.ReservationStatus) string {
	return strings.TrimPrefix(s.String(), "RESERVATION_STATUS_")
}

func formatTime(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().UTC().Format(time.RFC3339Nano)
}

// table writes aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) { fmt.Fprintln(t.tw, strings.Join(cells, "\t")) }

func (t *table) flush() error { return t.tw.Flush() }
