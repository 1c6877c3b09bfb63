package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "reservation/proto/reservation/v1"
)

// Each command declares its flags and says which flag each request field the server may
// reject comes from, so that errors name what the user typed.

func (c *cli) reserveCmd() *cobra.Command {
	var b bookingFlags
	var requestID string
	var hold time.Duration
	cmd := &cobra.Command{
		Use:   "reserve (--resource R | --pool P) --start T (--end T | --for D)",
		Short: "Book a resource for a window of time",
		Long: `reserve books a resource from --start to --end (or for --for). It fails with exit code 4,
listing the reservations in the way, when the window overlaps one. With --pool instead of
--resource it books the first free unit of the pool and prints which; a full pool is exit code 4.`,
		Example: `  rsvctl reserve --user alice --resource room-1 --start "2030-05-01 14:00" --for 2h
  rsvctl reserve --resource room-1 --start 2030-05-01 --for 1w --status blocked --note "repairs"
  rsvctl reserve --resource room-1 --start +1h --for 90m --hold 15m
  rsvctl reserve --pool deluxe-king --start "2030-05-01 15:00" --end "2030-05-03 11:00"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := c.newReservation(b)
			if err != nil {
				return err
			}
			req := &pb.ReserveRequest{Reservation: r, RequestId: requestID}
			if hold != 0 {
				req.Hold = durationpb.New(hold)
			}
			return c.call(cmd.Context(), false, func(ctx context.Context) error {
				resp, err := c.client.Reserve(ctx, req)
				if err != nil {
					return err
				}
				return c.reservations(resp.Reservation)
			})
		},
	}
	f := cmd.Flags()
	b.bindWho(f)
	f.StringVar(&b.pool, "pool", "", "pool id: book its first free unit")
	f.Var(timeFlag{&b.start}, "start", "start time (required)")
	f.Var(timeFlag{&b.end}, "end", "end time (or --for)")
	f.Var(durationFlag{&b.length}, "for", "length, instead of --end: 90m, 2h, 1d, 2w")
	b.bindWhat(f)
	f.Var(durationFlag{&hold}, "hold", "make it a hold that lapses after this long unless confirmed")
	f.StringVar(&requestID, "request-id", "", "idempotency key: a retry with it returns the first outcome")
	return cmd
}

func (c *cli) batchCmd() *cobra.Command {
	var file, requestID string
	var hold time.Duration
	cmd := &cobra.Command{
		Use:   "batch -f FILE",
		Short: "Book several reservations at once, all or none, from a JSON array",
		Long: `batch books the reservations of a JSON array, each spelled as in the API (user_id,
resource_id, start and end in RFC 3339, note, status), all or none.`,
		Example: `  rsvctl batch -f trip.json --request-id trip-7
  echo '[{"resource_id": "room-2", "start": "2030-04-01T10:00:00Z", "end": "2030-04-02T10:00:00Z"}]' | rsvctl batch`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var in io.Reader = os.Stdin
			if file != "-" {
				f, err := os.Open(file)
				if err != nil {
					return usagef("-f: %v", err)
				}
				defer f.Close()
				in = f
			}
			var raw []json.RawMessage
			if err := json.NewDecoder(in).Decode(&raw); err != nil {
				return usagef("-f %s: want a JSON array of reservations: %v", file, err)
			}
			req := &pb.ReserveBatchRequest{RequestId: requestID}
			for i, m := range raw {
				r := &pb.Reservation{}
				if err := protojson.Unmarshal(m, r); err != nil {
					return usagef("-f %s: reservation %d: %v", file, i+1, err)
				}
				req.Reservations = append(req.Reservations, r)
			}
			if hold != 0 {
				req.Hold = durationpb.New(hold)
			}
			c.fields["reservations"] = "-f " + file
			return c.call(cmd.Context(), false, func(ctx context.Context) error {
				resp, err := c.client.ReserveBatch(ctx, req)
				if err != nil {
					return err
				}
				return c.reservations(resp.Reservations...)
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "-", "JSON file holding an array of reservations (- for standard input)")
	f.Var(durationFlag{&hold}, "hold", "make them holds that lapse after this long unless confirmed")
	f.StringVar(&requestID, "request-id", "", "idempotency key: a retry with it returns the first outcome")
	return cmd
}

// idCmd makes a command that acts on one reservation by id.
func (c *cli) idCmd(cmd *cobra.Command, withVersion bool, call func(ctx context.Context, id string, version int64) (*pb.Reservation, error)) *cobra.Command {
	var version int64
	cmd.Args = oneID
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return c.call(cmd.Context(), false, func(ctx context.Context) error {
			r, err := call(ctx, args[0], version)
			if err != nil {
				return err
			}
			if cmd.Name() == "cancel" && !c.json {
				// What it was is gone: say so, as kubectl delete does.
				fmt.Fprintf(c.out, "reservation %s cancelled\n", r.GetId())
				return nil
			}
			return c.reservations(r)
		})
	}
	if withVersion {
		cmd.Flags().Int64Var(&version, "version", 0, "act only if the reservation is at this version (else exit code 5)")
	}
	return cmd
}

func (c *cli) confirmCmd() *cobra.Command {
	return c.idCmd(&cobra.Command{
		Use:     "confirm ID",
		Short:   "Confirm a pending reservation or hold",
		Example: "  rsvctl confirm 0193c0de-7a6b-7c2e-9f1a-2b3c4d5e6f70 --version 1",
	}, true, func(ctx context.Context, id string, v int64) (*pb.Reservation, error) {
		resp, err := c.client.Confirm(ctx, &pb.ConfirmRequest{Id: id, ExpectedVersion: v})
		return resp.GetReservation(), err
	})
}

func (c *cli) cancelCmd() *cobra.Command {
	var reason string
	cmd := c.idCmd(&cobra.Command{
		Use:   "cancel ID [--reason TEXT]",
		Short: "Cancel a reservation",
		Example: `  rsvctl cancel 0193c0de-7a6b-7c2e-9f1a-2b3c4d5e6f70
  rsvctl cancel 0193c0de-7a6b-7c2e-9f1a-2b3c4d5e6f70 --reason "guest called"`,
	}, true, func(ctx context.Context, id string, v int64) (*pb.Reservation, error) {
		resp, err := c.client.Cancel(ctx, &pb.CancelRequest{Id: id, ExpectedVersion: v, Reason: reason})
		return resp.GetReservation(), err
	})
	cmd.Flags().StringVar(&reason, "reason", "", "why, as the history keeps it (rsvctl history ID)")
	return cmd
}

func (c *cli) getCmd() *cobra.Command {
	return c.idCmd(&cobra.Command{
		Use:     "get ID",
		Short:   "Show one reservation",
		Example: "  rsvctl get 0193c0de-7a6b-7c2e-9f1a-2b3c4d5e6f70 -o json",
	}, false, func(ctx context.Context, id string, _ int64) (*pb.Reservation, error) {
		resp, err := c.client.Get(ctx, &pb.GetRequest{Id: id})
		return resp.GetReservation(), err
	})
}

func (c *cli) updateCmd() *cobra.Command {
	var note string
	cmd := c.idCmd(&cobra.Command{
		Use:     "update ID --note TEXT",
		Short:   "Change a reservation's note",
		Example: `  rsvctl update 0193c0de-7a6b-7c2e-9f1a-2b3c4d5e6f70 --note "early check-in"`,
	}, true, func(ctx context.Context, id string, v int64) (*pb.Reservation, error) {
		resp, err := c.client.Update(ctx, &pb.UpdateRequest{Id: id, Note: note, ExpectedVersion: v})
		return resp.GetReservation(), err
	})
	cmd.Flags().StringVar(&note, "note", "", "the new note")
	return cmd
}

func (c *cli) moveCmd() *cobra.Command {
	var start, end, resource, reason string
	var length time.Duration
	var version int64
	cmd := &cobra.Command{
		Use:   "move ID [--start T (--end T | --for D)] [--end T] [--resource R]",
		Short: "Move a reservation to another window or resource, all or nothing",
		Long: `move gives a reservation a new window (--start with --end or --for), a new end alone (--end,
to lengthen or shorten it), another resource (--resource), or both, at once: it keeps its id,
status, hold expiry and note. Its own old window is never in its way. It fails with exit code 4,
listing the reservations in the way and changing nothing, when the new window is taken.`,
		Example: `  rsvctl move 0193c0de-7a6b-7c2e-9f1a-2b3c4d5e6f70 --start "2030-05-01 14:30" --for 1h
  rsvctl move 0193c0de-7a6b-7c2e-9f1a-2b3c4d5e6f70 --end 2030-05-04 --version 2
  rsvctl move 0193c0de-7a6b-7c2e-9f1a-2b3c4d5e6f70 --resource room-2`,
		Args: oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := c.moveRequest(args[0], start, end, length, resource)
			if err != nil {
				return err
			}
			req.ExpectedVersion, req.Reason = version, reason
			c.fields["reason"] = "--reason"
			return c.call(cmd.Context(), false, func(ctx context.Context) error {
				resp, err := c.client.Update(ctx, req)
				if err != nil {
					return err
				}
				return c.reservations(resp.Reservation)
			})
		},
	}
	f := cmd.Flags()
	f.Var(timeFlag{&start}, "start", "new start time (with --end or --for)")
	f.Var(timeFlag{&end}, "end", "new end time")
	f.Var(durationFlag{&length}, "for", "new length from --start, instead of --end: 90m, 2h, 1d, 2w")
	f.StringVar(&resource, "resource", "", "move it to this resource")
	f.StringVar(&reason, "reason", "", "why, as the change's history records it")
	f.Int64Var(&version, "version", 0, "act only if the reservation is at this version (else exit code 5)")
	return cmd
}

// moveRequest reads move's flags into an Update whose mask names what they change.
func (c *cli) moveRequest(id, start, end string, length time.Duration, resource string) (*pb.UpdateRequest, error) {
	help := "rsvctl move --help"
	switch {
	case start == "" && end == "" && length == 0 && resource == "":
		return nil, usageError{msg: "give the new window (--start with --end or --for), a new --end, or a --resource", help: help}
	case length != 0 && end != "":
		return nil, usagef("give --end or --for, not both")
	case length != 0 && start == "":
		return nil, usageError{msg: "--for needs --start: the new window's length from its start", help: help}
	case start != "" && end == "" && length == 0:
		return nil, usageError{msg: "--start needs --end or --for: the new window's end", help: help}
	case length < 0:
		return nil, usagef("--for must be positive, got %s", formatDuration(length))
	}
	req := &pb.UpdateRequest{Id: id, ResourceId: resource, UpdateMask: &fieldmaskpb.FieldMask{}}
	var err error
	if req.Start, err = c.timestamp("start", start); err != nil {
		return nil, err
	}
	if req.End, err = c.timestamp("end", end); err != nil {
		return nil, err
	}
	if length != 0 {
		req.End = timestamppb.New(req.Start.AsTime().Add(length))
		c.fields["end"] = "--for"
	}
	for _, p := range []struct {
		path string
		set  bool
	}{{"start", req.Start != nil}, {"end", req.End != nil}, {"resource_id", resource != ""}} {
		if p.set {
			req.UpdateMask.Paths = append(req.UpdateMask.Paths, p.path)
		}
	}
	return req, nil
}

func (c *cli) queryCmd() *cobra.Command {
	var resource, user, st, start, end string
	var desc bool
	cmd := &cobra.Command{
		Use:   "query [--resource R] [--user U] [--start T] [--end T]",
		Short: "List reservations by resource, user, status and time",
		Example: `  rsvctl query --resource room-1 --start 2030-05-01 --end 2030-05-08
  rsvctl query --user alice --status confirmed --desc`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &pb.QueryRequest{ResourceId: resource, UserId: user, Desc: desc}
			var err error
			if st != "" {
				if req.Status, err = parseStatus(st); err != nil {
					return err
				}
			}
			if req.Start, err = c.timestamp("start", start); err != nil {
				return err
			}
			if req.End, err = c.timestamp("end", end); err != nil {
				return err
			}
			return c.call(cmd.Context(), false, func(ctx context.Context) error {
				stream, err := c.client.Query(ctx, req)
				if err != nil {
					return err
				}
				var all []*pb.Reservation
				for {
					r, err := stream.Recv()
					if err == io.EOF {
						return c.reservations(all...)
					}
					if err != nil {
						return err
					}
					all = append(all, r)
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&resource, "resource", "", "resource id")
	f.StringVar(&user, "user", "", "user id")
	f.StringVar(&st, "status", "", "pending, confirmed or blocked (default: all)")
	f.Var(timeFlag{&start}, "start", "overlapping from this time")
	f.Var(timeFlag{&end}, "end", "overlapping until this time")
	f.BoolVar(&desc, "desc", false, "latest first")
	return cmd
}

func (c *cli) freeCmd() *cobra.Command {
	var resource, pool, start, end string
	var minimum time.Duration
	cmd := &cobra.Command{
		Use:   "free (--resource R | --pool P) [--start T] [--end T] [--min D]",
		Short: "List a resource's or a pool's free windows, with the places left",
		Long: `free lists the windows of a resource that have a place left, split where the number of
places left (AVAILABLE) changes. With --pool instead of --resource it lists the free windows of
each enabled unit of the pool, by unit (RESOURCE), each with the unit's places left.`,
		Example: `  rsvctl free --resource room-1 --min 1h
  rsvctl free --resource room-1 --start "2030-05-01 08:00" --end "2030-05-01 20:00"
  rsvctl free --pool deluxe-king --start 2030-05-01 --end 2030-05-04 --min 1d`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			help := cmd.CommandPath() + " --help"
			switch {
			case resource != "" && pool != "":
				return usageError{msg: "give --resource or --pool, not both", help: help}
			case resource == "" && pool == "":
				return usageError{msg: "--resource or --pool is required", help: help}
			}
			c.fields["pool_id"] = "--pool"
			req := &pb.FreeSlotsRequest{ResourceId: resource, PoolId: pool, MinDuration: durationpb.New(minimum)}
			var err error
			if req.Start, err = c.timestamp("start", start); err != nil {
				return err
			}
			if req.End, err = c.timestamp("end", end); err != nil {
				return err
			}
			return c.call(cmd.Context(), false, func(ctx context.Context) error {
				resp, err := c.client.FreeSlots(ctx, req)
				if err != nil {
					return err
				}
				return c.windows(pool != "", resp.Free)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&resource, "resource", "", "resource id (this or --pool is required)")
	f.StringVar(&pool, "pool", "", "pool id: the free windows of each of its units")
	start, end = "now", "+1w"
	f.Var(timeFlag{&start}, "start", "window start")
	f.Var(timeFlag{&end}, "end", "window end")
	f.Var(durationFlag{&minimum}, "min", "shortest free window worth showing")
	return cmd
}

func (c *cli) listenCmd() *cobra.Command {
	var resource string
	var after int64
	var nats natsFlags
	cmd := &cobra.Command{
		Use:   "listen [--resource R] [--after SEQ] [--from-nats URLS]",
		Short: "Print changes as they happen, until stopped",
		Long: `listen prints each change (create, update, delete) as it happens, until interrupted.
Each has a seq: --after SEQ resumes after it, on any replica, while the server keeps it.
With --from-nats it reads the same changes from the NATS JetStream stream reservationd
exports them to (--nats-url; docs/nats.md), whose sequence is the seq, instead of a replica.`,
		Example: `  rsvctl listen --resource room-1
  rsvctl listen --after 0 -o json     # everything kept, then live; one JSON object per change
  rsvctl listen --from-nats nats://127.0.0.1:4222 --resource room-1 --after 100`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tw := newTable(c.out, "SEQ", "OP", "ID", "RESOURCE", "USER", "STATUS", "START", "END", "VERSION")
			print := func(m *pb.ListenResponse) {
				if c.json {
					c.printJSON(m)
					return
				}
				r := m.Reservation
				tw.row(fmt.Sprint(m.Seq), strings.TrimPrefix(m.Op.String(), "RESERVATION_UPDATE_TYPE_"), r.Id, r.ResourceId, r.UserId,
					statusName(r.Status), c.formatTimestamp(r.Start), c.formatTimestamp(r.End), fmt.Sprint(r.Version))
				tw.flush() // a line as each change comes
			}
			if nats.urls != "" {
				return nats.listen(cmd.Context(), resource, after, print)
			}
			req := &pb.ListenRequest{ResourceId: resource}
			if after >= 0 {
				seq := uint64(after)
				req.AfterSeq = &seq
			}
			c.fields["after_seq"] = "--after"
			return c.call(cmd.Context(), true, func(ctx context.Context) error {
				stream, err := c.client.Listen(ctx, req)
				if err != nil {
					return err
				}
				for {
					m, err := stream.Recv()
					if err != nil {
						return err
					}
					print(m)
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&resource, "resource", "", "only this resource's changes, and the moves away from it")
	f.Int64Var(&after, "after", -1, "resume after this seq (default: from now on)")
	f.Lookup("after").DefValue = ""
	nats.bind(f)
	return cmd
}

// window reads a reservation's resource and times from reserve's flags.
// bookingFlags describe one reservation to make: reserve's, or the first occurrence of a series.
type bookingFlags struct {
	user, resource, pool, start, end, note, status string
	length                                         time.Duration
}

// bindWho declares --user and --resource; the caller declares --pool, --start, --end and
// --for, whose help differs between commands.
func (b *bookingFlags) bindWho(f *pflag.FlagSet) {
	f.StringVar(&b.user, "user", "", "user id (with auth on: yours by default)")
	f.StringVar(&b.resource, "resource", "", "resource id (this or --pool is required)")
}

// bindWhat declares --note and --status.
func (b *bookingFlags) bindWhat(f *pflag.FlagSet) {
	f.StringVar(&b.note, "note", "", "note")
	f.StringVar(&b.status, "status", "pending", "pending, confirmed or blocked")
}

// newReservation is the reservation b describes: on --resource, or on any unit of --pool.
func (c *cli) newReservation(b bookingFlags) (*pb.Reservation, error) {
	if b.resource != "" && b.pool != "" {
		return nil, usagef("give --resource or --pool, not both")
	}
	r, err := c.window(b.resource+b.pool, b.start, b.end, b.length)
	if err != nil {
		return nil, err
	}
	if b.pool != "" {
		r.ResourceId, r.PoolId = "", b.pool
		c.fields["pool_id"] = "--pool"
	}
	r.UserId, r.Note = b.user, b.note
	if r.Status, err = parseStatus(b.status); err != nil {
		return nil, err
	}
	return r, nil
}

func (c *cli) window(resource, start, end string, length time.Duration) (*pb.Reservation, error) {
	var missing []string
	if resource == "" {
		missing = append(missing, "--resource")
	}
	if start == "" {
		missing = append(missing, "--start")
	}
	if end == "" && length == 0 {
		missing = append(missing, "--end or --for")
	}
	if len(missing) > 0 {
		return nil, usageError{msg: strings.Join(missing, " is required\nrsvctl: ") + " is required", help: "rsvctl reserve --help"}
	}
	s, err := c.parseTime("start", start)
	if err != nil {
		return nil, err
	}
	e, err := c.parseTime("end", end)
	if err != nil {
		return nil, err
	}
	endFlag := "--end"
	if length != 0 {
		if !e.IsZero() {
			return nil, usagef("give --end or --for, not both")
		}
		e, endFlag = s.Add(length), "--for"
	}
	c.fields["end"] = endFlag
	r := &pb.Reservation{ResourceId: resource, Start: timestamppb.New(s), End: timestamppb.New(e)}
	return r, nil
}

func (c *cli) timestamp(flagName string, s string) (*timestamppb.Timestamp, error) {
	t, err := c.parseTime(flagName, s)
	if err != nil || t.IsZero() {
		return nil, err
	}
	return timestamppb.New(t), nil
}

func parseStatus(s string) (pb.ReservationStatus, error) {
	v, ok := pb.ReservationStatus_value["RESERVATION_STATUS_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, usagef("--status must be pending, confirmed or blocked, got %q", s)
	}
	return pb.ReservationStatus(v), nil
}
