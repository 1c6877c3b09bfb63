package lock

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// RedisLogger adapts log to go-redis's logger (redis.SetLogger), so that the client's own
// messages (a pool that cannot dial, a cluster node marked failed) are lines of the service's
// log, in its format, instead of a second format on stderr. go-redis says nothing at a level:
// its messages are about a connection or a node going wrong, so each is a WARN.
func RedisLogger(log *slog.Logger) interface {
	Printf(ctx context.Context, format string, v ...any)
} {
	return redisLogger{log}
}

type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	msg := strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: ")
	l.log.WarnContext(ctx, msg, "component", "go-redis")
}
