package apiserver

import (
	"context"
	"fmt"

	v1 "berth.dev/berth/api/v1"
)

// environmentContents are the kinds an environment holds, in the order a
// cascading delete removes them: users of topics (workflows, functions)
// before the topics, stacks first so none redeploys what is going.
// Secrets, configs and stacks count as contents too: left behind they
// would come back with an environment of the same name.
var environmentContents = []string{
	v1.KindStack, v1.KindWorkflow, v1.KindFunction, v1.KindService, v1.KindTopic, v1.KindSecret, v1.KindConfig,
}

// emptyEnvironment deletes everything in env (delete --cascade). The
// controllers then stop the instances of the deleted workloads.
func (s *Server) emptyEnvironment(ctx context.Context, env string) error {
	for _, kind := range environmentContents {
		recs, _, err := s.store.List(ctx, kind, env)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if err := s.store.Delete(ctx, rec.Key, 0); err != nil && !v1.IsNotFound(err) {
				return fmt.Errorf("delete %s: %w", rec.Key, err)
			}
		}
	}
	return nil
}
