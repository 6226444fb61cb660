// Package queue owns Berth's asynchronous work: async invocations of
// functions, topic (queue) triggers, cron triggers, their retries with
// backoff and their dead letters. It runs an embedded NATS JetStream server
// in-process (no network listener) with file storage that syncs every write
// (sync_always), so an invocation or message whose Enqueue or Publish
// returned survives a kill -9 of the process. It does not know how a
// function runs (it calls an Invoker: the gateway, which wakes functions
// from zero) and it does not read the store (the function controller tells
// it the configured functions with SetFunctions); it must not flood a
// function either: at most 8 invocations per function are in flight, and
// the autoscaler does the rest.
//
// It counts its outcomes and reads its depths itself, exported as a
// Prometheus collector (Collector) that the composition root registers.
//
// Layout: invocation records are in the KV bucket berth_invocations under
// ENV.ID; the work is a message on the work-queue stream BERTH_INVOCATIONS,
// subject inv.ENV.FN, read by one durable consumer per function; callbacks
// waiting to be posted are on the work-queue stream BERTH_CALLBACKS,
// subject cb.ENV.ID; topic
// messages are on BERTH_TOPICS, subject topic.ENV.NAME, kept 7 days, read by
// one durable consumer per (function, topic); cron's last fired ticks are in
// the KV bucket berth_cron.
//
// Guarantees a user relies on:
//   - Delivery is at least once. A delivery is acknowledged only after its
//     outcome is recorded; a crash in between delivers it again. Each call
//     carries X-Berth-Invocation-Id and X-Berth-Attempt so that handlers can
//     de-duplicate. An attempt cut short by a crash counts as an attempt; one
//     cut short by Close does not.
//   - A failed attempt (an error, a timeout or a non-2xx answer) is retried
//     after Backoff × 2^(attempt-1), at most an hour, until MaxRetries
//     retries are used; then the invocation is Failed and its request (body
//     and headers, plus X-Berth-Function, X-Berth-Error and
//     X-Berth-Failed-Invocation-Id) is published to the DeadLetterTopic. A
//     function that subscribes to its own dead-letter topic does not
//     dead-letter what came from it.
//   - A callback URL gets the finished invocation, at least once too: the
//     callback is stored before the invocation is acknowledged and removed
//     only when the POST was answered 2xx or its last attempt failed
//     (CallbackAttempts, with backoff); a crash in between posts it again.
//     It is posted with the invocation's environment's egress client
//     (package egress): never to another environment, the host or
//     link-local addresses; the environment's own services by name
//     (http://NAME/) through its gateway.
//   - After a restart, pending invocations are delivered at once, keeping
//     what is left of a retry's backoff; results stay queryable for 7 days
//     after their last change.
//   - A function subscribes to a topic when SetFunctions first names it
//     with that topic: messages published before are not delivered to it.
//     From then on its durable consumer keeps its place, across restarts
//     and while the function is removed, within the topic's retention.
//   - A removed function's invocations stay stored and resume when it comes
//     back; Enqueue to it answers NotFound meanwhile.
//   - Cron fires each tick once; see cron.go for the rules on restarts and
//     missed ticks.
package queue
