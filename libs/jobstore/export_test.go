package jobstore

import (
	"context"

	"github.com/switchyard/switchyard/libs/jobs"
)

// AcceptBatch writes subs as one batch, as a writer of the Batcher does,
// and returns each one's error, so that a test can choose what two
// concurrent batches hold.
func (s *Store) AcceptBatch(ctx context.Context, subs []jobs.Submission) []error {
	batch := make([]*acceptance, len(subs))
	for i, sub := range subs {
		a, err := newAcceptance(sub)
		if err != nil {
			panic(err)
		}
		batch[i] = a
	}
	s.acceptAll(ctx, batch)
	errs := make([]error, len(batch))
	for i, a := range batch {
		errs[i] = a.err
	}
	return errs
}
