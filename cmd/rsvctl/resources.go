package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "reservation/proto/reservation/v1"
)

// resourceCmd is "resource put|get|list": the catalogue.
func (c *cli) resourceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "resource (put|get|list)",
		Short: "Put, show or list resources of the catalogue",
		Long: `resource put creates or replaces a resource (with auth on, admins only); resource get shows
one; resource list lists them by id, all or one pool's.`,
		Example: `  rsvctl resource put room-101 --pool deluxe-king --name "Room 101" --label floor=1
  rsvctl resource put garage-p1 --capacity 50 --time-zone Europe/Berlin
  rsvctl resource get room-101
  rsvctl resource list --pool deluxe-king`,
		Args: noArgs,
	}
	var pool, tz, name string
	var capacity int32
	var disabled bool
	var labels []string
	var version int64
	var rules resourceRules
	put := &cobra.Command{
		Use:   "put ID",
		Short: "Create or replace a resource",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r := &pb.Resource{Id: args[0], PoolId: pool, Capacity: capacity, TimeZone: tz, DisplayName: name, Disabled: disabled}
			rules.set(r)
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok {
					return usagef("--label %q: want key=value", l)
				}
				if r.Labels == nil {
					r.Labels = map[string]string{}
				}
				r.Labels[k] = v
			}
			c.fields["resource.pool_id"], c.fields["resource.capacity"], c.fields["resource.time_zone"] = "--pool", "--capacity", "--time-zone"
			c.fields["resource.display_name"], c.fields["resource.labels"], c.fields["expected_version"] = "--name", "--label", "--version"
			for _, rule := range ruleFields {
				c.fields["resource."+rule.field] = "--" + rule.flag
			}
			return c.call(cmd.Context(), false, func(ctx context.Context) error {
				resp, err := c.client.PutResource(ctx, &pb.PutResourceRequest{Resource: r, ExpectedVersion: version})
				if err != nil {
					return err
				}
				return c.resources(resp.GetResource())
			})
		},
	}
	f := put.Flags()
	f.StringVar(&pool, "pool", "", "the pool it belongs to (room type, parking level)")
	f.Int32Var(&capacity, "capacity", 0, "reservations that may overlap at an instant (0: 1)")
	f.StringVar(&tz, "time-zone", "", "IANA time zone (default UTC)")
	f.StringVar(&name, "name", "", "display name")
	f.StringArrayVar(&labels, "label", nil, "label key=value (repeatable)")
	f.BoolVar(&disabled, "disabled", false, "take no new reservations")
	f.Int64Var(&version, "version", 0, "put only if the resource is at this version (0: any)")
	for i, rule := range ruleFields {
		f.Var(durationFlag{&rules[i]}, rule.flag, rule.help)
	}
	get := &cobra.Command{
		Use:   "get ID",
		Short: "Show one resource",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), false, func(ctx context.Context) error {
				resp, err := c.client.GetResource(ctx, &pb.GetResourceRequest{Id: args[0]})
				if err != nil {
					return err
				}
				return c.resources(resp.GetResource())
			})
		},
	}
	var listPool string
	list := &cobra.Command{
		Use:   "list",
		Short: "List resources by id",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.call(cmd.Context(), false, func(ctx context.Context) error {
				req := &pb.ListResourcesRequest{PoolId: listPool, PageSize: 100}
				var all []*pb.Resource
				for {
					resp, err := c.client.ListResources(ctx, req)
					if err != nil {
						return err
					}
					all = append(all, resp.GetResources()...)
					if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
						return c.resources(all...)
					}
				}
			})
		},
	}
	list.Flags().StringVar(&listPool, "pool", "", "only this pool's units")
	cmd.AddCommand(put, get, list)
	return cmd
}

// resources prints resources as a table, or one JSON object per line.
func (c *cli) resources(rs ...*pb.Resource) error {
	if c.json {
		for _, r := range rs {
			c.printJSON(r)
		}
		return nil
	}
	tw := newTable(c.out, "ID", "POOL", "CAPACITY", "TIME ZONE", "DISABLED", "VERSION", "NAME", "LABELS", "RULES")
	for _, r := range rs {
		var labels []string
		for k, v := range r.GetLabels() {
			labels = append(labels, k+"="+v)
		}
		sort.Strings(labels)
		tw.row(r.GetId(), r.GetPoolId(), fmt.Sprint(r.GetCapacity()), r.GetTimeZone(), fmt.Sprint(r.GetDisabled()),
			fmt.Sprint(r.GetVersion()), r.GetDisplayName(), strings.Join(labels, ","), rulesOf(r))
	}
	return tw.flush()
}

// ruleFields are a Resource's buffers and booking rules: resource put's flag, the field, the
// short name tables show, help, and the field of the message.
var ruleFields = []struct {
	flag, field, short, help string
	of                       func(*pb.Resource) **durationpb.Duration
}{
	{"buffer-before", "buffer_before", "before", "turnaround: each booking also blocks this long before its start",
		func(r *pb.Resource) **durationpb.Duration { return &r.BufferBefore }},
	{"buffer-after", "buffer_after", "after", "turnaround: each booking also blocks this long after its end",
		func(r *pb.Resource) **durationpb.Duration { return &r.BufferAfter }},
	{"min-duration", "min_duration", "min", "shortest booking (0: no bound)",
		func(r *pb.Resource) **durationpb.Duration { return &r.MinDuration }},
	{"max-duration", "max_duration", "max", "longest booking (0: no bound)",
		func(r *pb.Resource) **durationpb.Duration { return &r.MaxDuration }},
	{"min-notice", "min_notice", "notice", "a booking starts at least this long from now (0: no rule)",
		func(r *pb.Resource) **durationpb.Duration { return &r.MinNotice }},
	{"max-advance", "max_advance", "advance", "a booking starts at most this long from now (0: no rule)",
		func(r *pb.Resource) **durationpb.Duration { return &r.MaxAdvance }},
}

// resourceRules hold resource put's rule flags, in ruleFields' order.
type resourceRules [6]time.Duration

// set puts the rules given into res (a zero one is no rule).
func (r *resourceRules) set(res *pb.Resource) {
	for i, f := range ruleFields {
		if r[i] != 0 {
			*f.of(res) = durationpb.New(r[i])
		}
	}
}

// rulesOf writes a resource's rules for a table: "after=15m notice=1h"; "" for none.
func rulesOf(res *pb.Resource) string {
	var out []string
	for _, f := range ruleFields {
		if d := (*f.of(res)).AsDuration(); d != 0 {
			out = append(out, f.short+"="+formatDuration(d))
		}
	}
	return strings.Join(out, " ")
}
