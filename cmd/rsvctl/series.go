package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "reservation/proto/reservation/v1"
)

// The series commands: series books a recurring reservation, cancel-series cancels one from
// an occurrence on. A series repeats in the zone of --tz, the one its times are read in.

func (c *cli) seriesCmd() *cobra.Command {
	var b bookingFlags
	var rrule, requestID string
	var exdates []string
	var hold time.Duration
	var skip bool
	cmd := &cobra.Command{
		Use:   "series (--resource R | --pool P) --start T (--end T | --for D) --rrule RULE",
		Short: "Book a recurring reservation",
		Long: `series books the first occurrence from --start to --end (or for --for) and repeats it as the
RFC 5545 rule --rrule says (FREQ=DAILY, WEEKLY or MONTHLY; INTERVAL; COUNT or UNTIL; BYDAY;
BYMONTHDAY; WKST), at the same wall-clock time in --tz across daylight saving changes.
Every occurrence is made or none (exit code 4, listing what is in the way), unless
--skip-conflicts makes the free ones and lists the others. --exdate leaves out the occurrence
that starts then. It prints the series id, the reservations made and the occurrences skipped.`,
		Example: `  rsvctl series --resource room-1 --start "2030-05-06 09:00" --for 1h --rrule "FREQ=WEEKLY;COUNT=10" --tz Europe/Paris
  rsvctl series --pool parking --start 2030-05-01 --for 1d --rrule "FREQ=MONTHLY;BYDAY=1MO;COUNT=12" --skip-conflicts
  rsvctl series --resource room-1 --start "2030-05-06 09:00" --for 1h --rrule "FREQ=DAILY;UNTIL=20300531T000000Z" --exdate "2030-05-13 09:00"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if b.resource != "" && b.pool != "" {
				return usagef("give --resource or --pool, not both")
			}
			if rrule == "" {
				return usageError{msg: "--rrule is required", help: "rsvctl series --help"}
			}
			first, err := c.newReservation(b)
			if err != nil {
				return err
			}
			zone, err := c.zoneName()
			if err != nil {
				return err
			}
			req := &pb.ReserveSeriesRequest{First: first, Rrule: rrule, TimeZone: zone, RequestId: requestID}
			for _, x := range exdates {
				ts, err := c.timestamp("exdate", x)
				if err != nil {
					return err
				}
				req.Exdates = append(req.Exdates, ts)
			}
			if skip {
				req.Mode = pb.SeriesMode_SERIES_MODE_SKIP_CONFLICTS
			}
			if hold != 0 {
				req.Hold = durationpb.New(hold)
			}
			return c.call(cmd.Context(), false, func(ctx context.Context) error {
				resp, err := c.client.ReserveSeries(ctx, req)
				if err != nil {
					return err
				}
				return c.series(resp)
			})
		},
	}
	f := cmd.Flags()
	b.bindWho(f)
	f.StringVar(&b.pool, "pool", "", "pool id: each occurrence books a free unit of the pool")
	f.Var(timeFlag{&b.start}, "start", "start of the first occurrence (required)")
	f.Var(timeFlag{&b.end}, "end", "end of the first occurrence (or --for)")
	f.Var(durationFlag{&b.length}, "for", "length of each occurrence, instead of --end: 90m, 2h, 1d")
	f.StringVar(&rrule, "rrule", "", `recurrence rule (required), e.g. "FREQ=WEEKLY;COUNT=10;BYDAY=MO,WE"`)
	f.StringArrayVar(&exdates, "exdate", nil, "start of an occurrence to leave out (repeat for more)")
	f.BoolVar(&skip, "skip-conflicts", false, "make the free occurrences and list the others, instead of all or none")
	b.bindWhat(f)
	f.Var(durationFlag{&hold}, "hold", "make each occurrence a hold that lapses after this long unless confirmed")
	f.StringVar(&requestID, "request-id", "", "idempotency key: a retry with it returns the first outcome")
	return cmd
}

func (c *cli) cancelSeriesCmd() *cobra.Command {
	var from, reason string
	cmd := &cobra.Command{
		Use:   "cancel-series SERIES_ID [--from T]",
		Short: "Cancel a series, or an occurrence and the ones after it",
		Long: `cancel-series cancels every occurrence of a series, or with --from the occurrences that start
then or later ("this and following"), all at once. It lists what it cancelled.`,
		Example: `  rsvctl cancel-series 0193c0de-7a6b-7c2e-9f1a-2b3c4d5e6f70
  rsvctl cancel-series 0193c0de-7a6b-7c2e-9f1a-2b3c4d5e6f70 --from "2030-06-03 09:00" --reason "room closes"`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{msg: fmt.Sprintf("%s takes one series id, got %d arguments", cmd.Name(), len(args)), help: cmd.CommandPath() + " --help"}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &pb.CancelSeriesRequest{SeriesId: args[0], Reason: reason}
			if from != "" {
				ts, err := c.timestamp("from", from)
				if err != nil {
					return err
				}
				req.From = ts
			}
			return c.call(cmd.Context(), false, func(ctx context.Context) error {
				resp, err := c.client.CancelSeries(ctx, req)
				if err != nil {
					return err
				}
				if !c.json {
					fmt.Fprintf(c.out, "series %s: %d reservations cancelled\n", req.SeriesId, len(resp.GetReservations()))
				}
				return c.reservations(resp.GetReservations()...)
			})
		},
	}
	cmd.Flags().Var(timeFlag{&from}, "from", "cancel the occurrences starting at or after this time only")
	cmd.Flags().StringVar(&reason, "reason", "", "why, as the history records it")
	return cmd
}

// series prints a series' outcome: its id, the reservations made and the occurrences
// skipped, as tables; or, with -o json, the answer as one object.
func (c *cli) series(resp *pb.ReserveSeriesResponse) error {
	if c.json {
		c.printJSON(resp)
		return nil
	}
	fmt.Fprintf(c.out, "series %s: %d reservations made, %d skipped\n", resp.GetSeriesId(), len(resp.GetReservations()), len(resp.GetSkipped()))
	if err := c.reservations(resp.GetReservations()...); err != nil {
		return err
	}
	if len(resp.GetSkipped()) == 0 {
		return nil
	}
	fmt.Fprintln(c.out, "skipped:")
	tw := newTable(c.out, "START", "END", "REASON", "IN THE WAY")
	for _, s := range resp.GetSkipped() {
		tw.row(c.formatTimestamp(s.GetWindow().GetStart()), c.formatTimestamp(s.GetWindow().GetEnd()), s.GetReason(), strings.Join(s.GetConflictingIds(), ","))
	}
	return tw.flush()
}

// zoneName is the IANA name of --tz, which a series repeats in: the name given, or the local
// zone's (from TZ or /etc/localtime).
func (c *cli) zoneName() (string, error) {
	if name := c.tz.String(); name != "Local" {
		return name, nil
	}
	if tz := strings.TrimPrefix(os.Getenv("TZ"), ":"); tz != "" {
		if _, err := time.LoadLocation(tz); err == nil && !filepath.IsAbs(tz) {
			return tz, nil
		}
	}
	if link, err := os.Readlink("/etc/localtime"); err == nil {
		if _, name, ok := strings.Cut(link, "zoneinfo/"); ok {
			return name, nil
		}
	}
	return "", usagef("the local time zone has no name a server can read: give --tz, e.g. --tz Europe/Paris")
}
