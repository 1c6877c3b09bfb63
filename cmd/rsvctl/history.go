package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	pb "reservation/proto/reservation/v1"
)

func (c *cli) historyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "history ID",
		Short: "Show every change of a reservation: when, by whom and why",
		Long: `history lists every change of one reservation the server still keeps (400 days by default,
however short the change feed's retention), oldest first: the op, when it was made, who made it
(the authenticated user, or the reservation's user with auth off; "system" for a hold that
lapsed), the reservation as the change left it, and the reason given. A cancelled reservation's
history ends with its DELETE. With auth on, a user sees only the history of their own
reservations.`,
		Example: `  rsvctl history 0193c0de-7a6b-7c2e-9f1a-2b3c4d5e6f70
  rsvctl history 0193c0de-7a6b-7c2e-9f1a-2b3c4d5e6f70 -o json`,
		Args: oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), false, func(ctx context.Context) error {
				resp, err := c.client.History(ctx, &pb.HistoryRequest{ReservationId: args[0]})
				if err != nil {
					return err
				}
				if c.json {
					for _, ch := range resp.Changes {
						c.printJSON(ch)
					}
					return nil
				}
				tw := newTable(c.out, "OP", "AT", "ACTOR", "STATUS", "RESOURCE", "START", "END", "VERSION", "REASON")
				for _, ch := range resp.Changes {
					r := ch.Reservation
					tw.row(strings.TrimPrefix(ch.Op.String(), "RESERVATION_UPDATE_TYPE_"), c.formatTimestamp(ch.CommittedAt), ch.Actor,
						statusName(r.Status), r.ResourceId, c.formatTimestamp(r.Start), c.formatTimestamp(r.End), fmt.Sprint(r.Version),
						strings.ReplaceAll(ch.Reason, "\n", " "))
				}
				return tw.flush()
			})
		},
	}
}
