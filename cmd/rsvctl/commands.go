package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "reservation/proto/reservation/v1"
)

// A command declares its flags on fs and returns what runs it with the remaining arguments.
type command func(c *cli, fs *flag.FlagSet) func(ctx context.Context, args []string) error

var commands = map[string]command{
	"reserve": reserveCmd,
	"batch":   batchCmd,
	"confirm": confirmCmd,
	"update":  updateCmd,
	"cancel":  cancelCmd,
	"get":     getCmd,
	"query":   queryCmd,
	"free":    freeCmd,
	"listen":  listenCmd,
}

func reserveCmd(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	user := fs.String("user", "", "user id (with auth on: yours by default)")
	resource := fs.String("resource", "", "resource id")
	start := fs.String("start", "", "start: RFC 3339 or +duration")
	end := fs.String("end", "", "end: RFC 3339 or +duration (or --for)")
	length := fs.Duration("for", 0, "length, instead of --end")
	note := fs.String("note", "", "note")
	st := fs.String("status", "pending", "pending, confirmed or blocked")
	hold := fs.Duration("hold", 0, "make it a hold that lapses after this long unless confirmed")
	requestID := fs.String("request-id", "", "idempotency key: a retry with it returns the first outcome")
	return func(ctx context.Context, _ []string) error {
		r, err := c.window(*resource, *start, *end, *length)
		if err != nil {
			return err
		}
		r.UserId, r.Note = *user, *note
		if r.Status, err = parseStatus(*st); err != nil {
			return err
		}
		req := &pb.ReserveRequest{Reservation: r, RequestId: *requestID}
		if *hold != 0 {
			req.Hold = durationpb.New(*hold)
		}
		resp, err := c.client.Reserve(ctx, req)
		if err != nil {
			return err
		}
		return c.reservations(resp.Reservation)
	}
}

func batchCmd(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	file := fs.String("f", "-", "JSON file (or - for standard input) holding an array of reservations, as in the API")
	hold := fs.Duration("hold", 0, "make them holds that lapse after this long unless confirmed")
	requestID := fs.String("request-id", "", "idempotency key")
	return func(ctx context.Context, _ []string) error {
		var in io.Reader = os.Stdin
		if *file != "-" {
			f, err := os.Open(*file)
			if err != nil {
				return usagef("%v", err)
			}
			defer f.Close()
			in = f
		}
		var raw []json.RawMessage
		if err := json.NewDecoder(in).Decode(&raw); err != nil {
			return usagef("batch: want a JSON array of reservations: %v", err)
		}
		req := &pb.ReserveBatchRequest{RequestId: *requestID}
		for i, m := range raw {
			r := &pb.Reservation{}
			if err := protojson.Unmarshal(m, r); err != nil {
				return usagef("batch: reservation %d: %v", i, err)
			}
			req.Reservations = append(req.Reservations, r)
		}
		if *hold != 0 {
			req.Hold = durationpb.New(*hold)
		}
		resp, err := c.client.ReserveBatch(ctx, req)
		if err != nil {
			return err
		}
		return c.reservations(resp.Reservations...)
	}
}

// idCmd makes the commands that act on one reservation by id.
func idCmd(call func(ctx context.Context, c *cli, id string, version int64) (*pb.Reservation, error)) command {
	return func(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
		version := fs.Int64("version", 0, "act only if the reservation is at this version")
		return func(ctx context.Context, args []string) error {
			if len(args) != 1 {
				return usagef("want one reservation id, got %d arguments", len(args))
			}
			r, err := call(ctx, c, args[0], *version)
			if err != nil {
				return err
			}
			return c.reservations(r)
		}
	}
}

var (
	confirmCmd = idCmd(func(ctx context.Context, c *cli, id string, v int64) (*pb.Reservation, error) {
		resp, err := c.client.Confirm(ctx, &pb.ConfirmRequest{Id: id, ExpectedVersion: v})
		return resp.GetReservation(), err
	})
	cancelCmd = idCmd(func(ctx context.Context, c *cli, id string, v int64) (*pb.Reservation, error) {
		resp, err := c.client.Cancel(ctx, &pb.CancelRequest{Id: id, ExpectedVersion: v})
		return resp.GetReservation(), err
	})
	getCmd = idCmd(func(ctx context.Context, c *cli, id string, _ int64) (*pb.Reservation, error) {
		resp, err := c.client.Get(ctx, &pb.GetRequest{Id: id})
		return resp.GetReservation(), err
	})
)

func updateCmd(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	note := fs.String("note", "", "the new note")
	return idCmd(func(ctx context.Context, c *cli, id string, v int64) (*pb.Reservation, error) {
		resp, err := c.client.Update(ctx, &pb.UpdateRequest{Id: id, Note: *note, ExpectedVersion: v})
		return resp.GetReservation(), err
	})(c, fs)
}

func queryCmd(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	resource := fs.String("resource", "", "resource id")
	user := fs.String("user", "", "user id")
	st := fs.String("status", "", "pending, confirmed or blocked (default all)")
	start := fs.String("start", "", "overlapping from: RFC 3339 or +duration")
	end := fs.String("end", "", "overlapping until: RFC 3339 or +duration")
	desc := fs.Bool("desc", false, "latest first")
	return func(ctx context.Context, _ []string) error {
		req := &pb.QueryRequest{ResourceId: *resource, UserId: *user, Desc: *desc}
		var err error
		if *st != "" {
			if req.Status, err = parseStatus(*st); err != nil {
				return err
			}
		}
		if req.Start, err = c.timestamp("start", *start); err != nil {
			return err
		}
		if req.End, err = c.timestamp("end", *end); err != nil {
			return err
		}
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
	}
}

func freeCmd(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	resource := fs.String("resource", "", "resource id")
	start := fs.String("start", "now", "window start: RFC 3339 or +duration")
	end := fs.String("end", "+168h", "window end: RFC 3339 or +duration")
	minimum := fs.Duration("min", 0, "shortest free window worth showing")
	return func(ctx context.Context, _ []string) error {
		req := &pb.FreeSlotsRequest{ResourceId: *resource, MinDuration: durationpb.New(*minimum)}
		var err error
		if req.Start, err = c.timestamp("start", *start); err != nil {
			return err
		}
		if req.End, err = c.timestamp("end", *end); err != nil {
			return err
		}
		resp, err := c.client.FreeSlots(ctx, req)
		if err != nil {
			return err
		}
		if c.json {
			for _, w := range resp.Free {
				c.printJSON(w)
			}
			return nil
		}
		tw := newTable(c.out, "START", "END", "LENGTH")
		for _, w := range resp.Free {
			tw.row(formatTime(w.Start), formatTime(w.End), w.End.AsTime().Sub(w.Start.AsTime()).String())
		}
		return tw.flush()
	}
}

func listenCmd(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	resource := fs.String("resource", "", "only this resource's changes")
	after := fs.Int64("after", -1, "resume after this seq (default: from now on)")
	return func(ctx context.Context, _ []string) error {
		req := &pb.ListenRequest{ResourceId: *resource}
		if *after >= 0 {
			seq := uint64(*after)
			req.AfterSeq = &seq
		}
		stream, err := c.client.Listen(ctx, req)
		if err != nil {
			return err
		}
		tw := newTable(c.out, "SEQ", "OP", "ID", "RESOURCE", "USER", "STATUS", "START", "END", "VERSION")
		for {
			m, err := stream.Recv()
			if err != nil {
				return err
			}
			if c.json {
				c.printJSON(m)
				continue
			}
			r := m.Reservation
			tw.row(fmt.Sprint(m.Seq), strings.TrimPrefix(m.Op.String(), "RESERVATION_UPDATE_TYPE_"), r.Id, r.ResourceId, r.UserId,
				statusName(r.Status), formatTime(r.Start), formatTime(r.End), fmt.Sprint(r.Version))
			tw.flush() // a line as each change comes
		}
	}
}

// window reads a resource and a time window from flags.
func (c *cli) window(resource, start, end string, length time.Duration) (*pb.Reservation, error) {
	s, err := c.parseTime("start", start)
	if err != nil {
		return nil, err
	}
	e, err := c.parseTime("end", end)
	if err != nil {
		return nil, err
	}
	if length != 0 {
		if !e.IsZero() {
			return nil, usagef("give --end or --for, not both")
		}
		e = s.Add(length)
	}
	r := &pb.Reservation{ResourceId: resource}
	if !s.IsZero() {
		r.Start = timestamppb.New(s)
	}
	if !e.IsZero() {
		r.End = timestamppb.New(e)
	}
	return r, nil
}

func (c *cli) timestamp(flagName, s string) (*timestamppb.Timestamp, error) {
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
