package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "reservation/proto/reservation/v1"
)

// searchCmd is rsvctl search: SearchAvailability, following its pages up to --limit offers.
func (c *cli) searchCmd() *cobra.Command {
	var selector, pool, start, end string
	var length, step time.Duration
	var places, limit int
	cmd := &cobra.Command{
		Use:   "search (--selector S | --pool P) --start T --end T [--length D [--step D]] [--places N]",
		Short: "Find what is free for a window across the catalogue, or a pool's first free unit",
		Long: `search lists the resources a label selector picks that could be booked for the window from
--start to --end, with the places left; with --pool, the pool's first unit free (the one reserve
--pool books). With --length it looks for a window that long between --start and --end instead,
and lists each resource's earliest (on --start plus a multiple of --step, when given).

The selector is Kubernetes' label selector, with integer comparisons: view=sea,beds>=2,
view in (sea,garden), !accessible. Offers are by resource; every one is a window reserve would
accept now (buffers, capacity, booking rules, disabled units and lapsed holds counted).`,
		Example: `  rsvctl search --selector 'view=sea,beds>=2' --start 2030-03-03 --end 2030-03-05
  rsvctl search --selector 'view in (sea,garden)' --start 2030-03-01 --end 2030-03-10 --length 2d --step 1d
  rsvctl search --pool deluxe-king --start "2030-05-01 15:00" --end "2030-05-03 11:00" --places 2`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			help := cmd.CommandPath() + " --help"
			switch {
			case selector != "" && pool != "":
				return usageError{msg: "give --selector or --pool, not both", help: help}
			case selector == "" && pool == "":
				return usageError{msg: "--selector or --pool is required", help: help}
			case step != 0 && length == 0:
				return usageError{msg: "--step goes with --length", help: help}
			case limit <= 0:
				return usageError{msg: "--limit must be positive", help: help}
			}
			for field, flag := range map[string]string{"pool_id": "--pool", "selector": "--selector", "range_start": "--start",
				"range_end": "--end", "duration": "--length", "step": "--step", "places": "--places"} {
				c.fields[field] = flag
			}
			req := &pb.SearchAvailabilityRequest{Selector: selector, PoolId: pool, Places: int32(places), PageSize: int32(min(limit, 500))}
			s, err := c.timestamp("start", start)
			if err != nil {
				return err
			}
			e, err := c.timestamp("end", end)
			if err != nil {
				return err
			}
			if length > 0 {
				req.RangeStart, req.RangeEnd, req.Duration = s, e, durationpb.New(length)
				if step > 0 {
					req.Step = durationpb.New(step)
				}
			} else {
				req.Start, req.End = s, e
			}
			return c.call(cmd.Context(), false, func(ctx context.Context) error {
				var all []*pb.AvailabilityOffer
				for {
					resp, err := c.client.SearchAvailability(ctx, req)
					if err != nil {
						return err
					}
					all = append(all, resp.GetOffers()...)
					if resp.GetNextPageToken() == "" || len(all) >= limit {
						if len(all) > limit {
							all = all[:limit]
						}
						if resp.GetNextPageToken() != "" {
							fmt.Fprintf(c.errOut, "rsvctl: more offers follow: raise --limit to see them\n")
						}
						return c.offers(all)
					}
					req.PageToken = resp.GetNextPageToken()
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&selector, "selector", "", "label selector over the catalogue (this or --pool is required)")
	f.StringVar(&pool, "pool", "", "pool id: its first unit free")
	f.Var(timeFlag{&start}, "start", "window start (with --length: the earliest start)")
	f.Var(timeFlag{&end}, "end", "window end (with --length: the latest end)")
	f.Var(durationFlag{&length}, "length", "look for a window this long between --start and --end")
	f.Var(durationFlag{&step}, "step", "with --length: starts on --start plus a multiple of this")
	f.IntVar(&places, "places", 1, "places the resource must have free throughout")
	f.IntVar(&limit, "limit", 50, "show at most this many offers")
	return cmd
}

// offers prints a search's offers.
func (c *cli) offers(os []*pb.AvailabilityOffer) error {
	if c.json {
		for _, o := range os {
			c.printJSON(o)
		}
		return nil
	}
	tw := newTable(c.out, "RESOURCE", "POOL", "START", "END", "LENGTH", "AVAILABLE")
	for _, o := range os {
		tw.row(o.ResourceId, o.PoolId, c.formatTimestamp(o.Start), c.formatTimestamp(o.End),
			formatDuration(o.End.AsTime().Sub(o.Start.AsTime())), fmt.Sprint(o.Available))
	}
	return tw.flush()
}
