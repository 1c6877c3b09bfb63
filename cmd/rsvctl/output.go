package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

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

// reasonCancelled is the ErrorInfo reason of a Get of a cancelled reservation the history
// still keeps (reservation.ReasonReservationCancelled).
const reasonCancelled = "RESERVATION_CANCELLED"

var exitCodes = map[codes.Code]int{
	codes.InvalidArgument: exitUsage, codes.NotFound: exitNotFound, codes.FailedPrecondition: exitConflict,
	codes.Aborted: exitStale, codes.Unavailable: exitUnavailable, codes.DeadlineExceeded: exitUnavailable,
	codes.Unauthenticated: exitDenied, codes.PermissionDenied: exitDenied, codes.OutOfRange: exitFeed,
	codes.ResourceExhausted: exitFeed,
}

// fail explains err to a person, once, and returns the exit code for it.
func (c *cli) fail(err error) int {
	if c.tz == nil {
		c.tz = time.Local // the global flags were not read: a flag error
	}
	var u usageError
	if errors.As(err, &u) {
		if u.msg != "" {
			fmt.Fprintln(c.errOut, "rsvctl:", u.msg)
		}
		if u.help != "" {
			fmt.Fprintf(c.errOut, "Run '%s' for usage.\n", u.help)
		}
		return exitUsage
	}
	st, ok := status.FromError(err)
	if !ok {
		fmt.Fprintln(c.errOut, "rsvctl:", err)
		return exitError
	}
	code, ok := exitCodes[st.Code()]
	if !ok {
		code = exitError
	}
	if c.explainConnection(st) {
		return code
	}
	var violations []*errdetails.BadRequest_FieldViolation
	var conflict, cancelled *errdetails.ErrorInfo
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			violations = append(violations, d.GetFieldViolations()...)
		case *errdetails.ErrorInfo:
			switch {
			case d.GetMetadata()["conflict_count"] != "":
				conflict = d
			case d.GetReason() == reasonCancelled:
				cancelled = d
			}
		}
	}
	switch {
	case len(violations) > 0:
		// Each field once, by the flag that set it; the message only repeats them.
		for _, v := range violations {
			desc := c.localize(v.GetDescription())
			sep := ": " // --end: window lasts 731d, …
			if strings.HasPrefix(desc, "must ") || strings.HasPrefix(desc, "is ") {
				sep = " " // --resource is required
			}
			fmt.Fprintf(c.errOut, "rsvctl: %s%s%s\n", c.flagFor(v.GetField()), sep, desc)
		}
	case conflict != nil:
		fmt.Fprintf(c.errOut, "rsvctl: conflict: %s\n", c.localize(st.Message()))
		c.printConflicts(conflict.GetMetadata())
	case st.Code() == codes.NotFound: // the message says it: reservation "…" not found, or was cancelled at … by …
		fmt.Fprintf(c.errOut, "rsvctl: %s\n", c.localize(st.Message()))
		if why := cancelled.GetMetadata()["reason"]; why != "" {
			fmt.Fprintf(c.errOut, "reason: %s\n", why)
		}
	default:
		fmt.Fprintf(c.errOut, "rsvctl: %s: %s\n", words(st.Code().String()), c.localize(st.Message()))
	}
	return code
}

// explainConnection says what went wrong when the server could not be asked at all, and what to
// try; it reports whether it did.
func (c *cli) explainConnection(st *status.Status) bool {
	msg := st.Message()
	switch {
	case st.Code() == codes.Unavailable && (strings.Contains(msg, "HTTP/1.1 header") || strings.Contains(msg, "frame too large")):
		fmt.Fprintf(c.errOut, "rsvctl: %s answered in HTTP/1.1, not gRPC: is it reservationd's HTTP port?\n", target(c.addr))
		fmt.Fprintf(c.errOut, "  rsvctl talks to the gRPC port (reservationd --grpc-addr, %s by default): set it with --addr or RSVCTL_ADDR.\n", defaultPort)
	case st.Code() == codes.Unavailable && strings.Contains(msg, "connection refused"):
		fmt.Fprintf(c.errOut, "rsvctl: cannot connect to %s: connection refused\n", target(c.addr))
		fmt.Fprintln(c.errOut, "  Is reservationd running there? Set its gRPC address with --addr or RSVCTL_ADDR.")
	case st.Code() == codes.Unavailable && (strings.Contains(msg, "tls:") || strings.Contains(msg, "authentication handshake failed")):
		fmt.Fprintf(c.errOut, "rsvctl: TLS with %s failed: %s\n", target(c.addr), msg)
		fmt.Fprintln(c.errOut, "  Check --tls-ca (and --tls-cert, --tls-key), or leave them out for a server without TLS.")
	case st.Code() == codes.Unavailable && strings.Contains(msg, "connection error"):
		fmt.Fprintf(c.errOut, "rsvctl: cannot connect to %s: %s\n", target(c.addr), msg)
	case st.Code() == codes.DeadlineExceeded:
		fmt.Fprintf(c.errOut, "rsvctl: no answer from %s within --timeout %s\n", target(c.addr), formatDuration(c.timeout))
	case st.Code() == codes.Unauthenticated && c.token == "":
		fmt.Fprintf(c.errOut, "rsvctl: unauthenticated: %s\n", msg)
		fmt.Fprintln(c.errOut, "  The server has auth on: give a token with --token or RSVCTL_TOKEN (an admin makes one with 'rsvctl token').")
	case st.Code() == codes.Unauthenticated:
		fmt.Fprintf(c.errOut, "rsvctl: unauthenticated: %s\n", msg)
		fmt.Fprintln(c.errOut, "  The server does not know the token of --token or RSVCTL_TOKEN: check it against its --auth-file.")
	default:
		return false
	}
	return true
}

// The flags behind request fields, in the proto's names.
var fieldFlags = map[string]string{
	"resource_id": "--resource", "user_id": "--user", "start": "--start", "end": "--end", "note": "--note",
	"status": "--status", "hold": "--hold", "request_id": "--request-id", "min_duration": "--min",
	"expected_version": "--version", "id": "ID", "after_seq": "--after", "reservation_id": "ID",
	"rrule": "--rrule", "time_zone": "--tz", "exdates": "--exdate", "mode": "--skip-conflicts", "series_id": "SERIES_ID",
	"from": "--from", "reason": "--reason",
}

var batchField = regexp.MustCompile(`^reservations\[(\d+)\]\.(.+)$`)

// flagFor names a request field as the user gave it: reservation.resource_id is --resource; a
// batch's reservations[2].end is "reservation 3 of -f trip.json: end".
func (c *cli) flagFor(field string) string {
	if m := batchField.FindStringSubmatch(field); m != nil {
		n, _ := strconv.Atoi(m[1])
		return fmt.Sprintf("reservation %d of %s: %s", n+1, c.fields["reservations"], m[2])
	}
	field = strings.TrimPrefix(strings.TrimPrefix(field, "reservation."), "first.") // Reserve's, ReserveSeries'
	if strings.HasPrefix(field, "exdates[") {
		return "--exdate"
	}
	if f, ok := c.fields[field]; ok {
		return f
	}
	if f, ok := fieldFlags[field]; ok {
		return f
	}
	return field
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

// printConflicts lists the reservations in the way, from a conflict's ErrorInfo; ITEM, the
// index of the batch's reservation each blocks, only for a batch.
func (c *cli) printConflicts(md map[string]string) {
	n, _ := strconv.Atoi(md["conflict_count"])
	if n == 0 {
		return
	}
	batch := c.fields["reservations"] != ""
	fmt.Fprintln(c.errOut, "in the way:")
	header := []string{"ID", "START", "END"}
	if batch {
		header = append([]string{"ITEM"}, header...)
	}
	tw := newTable(c.errOut, header...)
	for i := range n {
		k := fmt.Sprintf("conflict_%d_", i)
		row := []string{md[k+"id"], c.localize(md[k+"start"]), c.localize(md[k+"end"])}
		if batch {
			item, _ := strconv.Atoi(md[k+"item"])
			row = append([]string{strconv.Itoa(item + 1)}, row...)
		}
		tw.row(row...)
	}
	tw.flush()
	if md["conflicts_truncated"] == "true" {
		fmt.Fprintln(c.errOut, "and more")
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
		tw.row(r.Id, r.ResourceId, r.UserId, statusName(r.Status), c.formatTimestamp(r.Start), c.formatTimestamp(r.End),
			fmt.Sprint(r.Version), c.formatTimestamp(r.ExpiresAt), strings.ReplaceAll(r.Note, "\n", " "))
	}
	return tw.flush()
}

// windows prints free windows as a table, with the places left in each and, for a pool, the
// unit it is on first; or one JSON object per line.
func (c *cli) windows(pool bool, ws []*pb.TimeWindow) error {
	if c.json {
		for _, w := range ws {
			c.printJSON(w)
		}
		return nil
	}
	header := []string{"START", "END", "LENGTH", "AVAILABLE"}
	if pool {
		header = append([]string{"RESOURCE"}, header...)
	}
	tw := newTable(c.out, header...)
	for _, w := range ws {
		row := []string{c.formatTimestamp(w.Start), c.formatTimestamp(w.End), formatDuration(w.End.AsTime().Sub(w.Start.AsTime())), fmt.Sprint(w.Available)}
		if pool {
			row = append([]string{w.ResourceId}, row...)
		}
		tw.row(row...)
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

// table writes aligned columns.
// table aligns rows in columns. Lines end at their last text: a row whose last cells are
// empty has no padding after it.
type table struct {
	out io.Writer
	buf bytes.Buffer
	tw  *tabwriter.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{out: w}
	t.tw = tabwriter.NewWriter(&t.buf, 0, 0, 2, ' ', 0)
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) { fmt.Fprintln(t.tw, strings.Join(cells, "\t")) }

func (t *table) flush() error {
	if err := t.tw.Flush(); err != nil {
		return err
	}
	for _, line := range strings.SplitAfter(t.buf.String(), "\n") {
		if _, err := io.WriteString(t.out, strings.TrimRight(line, " ")); err != nil {
			return err
		}
	}
	t.buf.Reset()
	return nil
}
