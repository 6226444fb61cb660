// Package asl parses and interprets the Amazon States Language
// (https://states-language.net) as Berth's Workflow definitions use it.
//
// It is a pure library: it owns validation (Parse) and the semantics of every
// state, path, intrinsic function, Retry and Catch, and nothing else. Everything
// nondeterministic or external — running a Task, the clock, sleeping, random
// numbers, UUIDs, and the history it records — goes through the Runtime the
// caller passes to Run. The durable engine implements Runtime over a journal,
// so re-running an execution from its start after a crash replays recorded
// answers instead of redoing work; that only works because, for a given
// sequence of answers, Run makes the same calls with the same keys and records
// the same events in the same order, also under Map and Parallel concurrency
// (see Runtime for the key scheme and the ordering rules). This package must
// not start timers, read the wall clock, touch the store or do I/O.
package asl
