package server

import (
	"context"
	"log/slog"

	"berth.dev/berth/internal/config"
)

// Run starts every part of a Berth server and blocks until ctx ends, then
// stops them in reverse order. Ready, if not nil, is called once the API and
// gateway are serving.
func Run(ctx context.Context, cfg config.Config, logger *slog.Logger, ready func(*Server)) error {
	s, err := New(cfg, logger)
	if err != nil {
		return err
	}
	return s.Run(ctx, ready)
}
