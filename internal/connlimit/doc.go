// Package connlimit bounds what one client can hold of a server: how many
// connections (per listener and per client address), how long it may take
// to send a request (headers, then the body at a minimum rate), how long a
// write to it may stall, and how long an idle keep-alive connection stays.
//
// It does this without a whole-request read or write deadline, which
// would cut the streams a gateway must keep serving (server-sent events,
// WebSockets, large downloads and uploads): every bound is on progress,
// not on duration.
//
//   - Headers must arrive within ReadHeader; an idle keep-alive connection
//     is closed after Idle.
//   - A request body must keep up MinBodyRate on average after a grace
//     period, counting only the time spent waiting for the client (not the
//     time the handler spends elsewhere), and no single wait may exceed
//     BodyStall. A slower body fails its read with ErrBodyTooSlow and the
//     connection is closed.
//   - A write to the client may stall at most WriteStall: a client that
//     stops reading is cut when the server next has something to send,
//     while a stream that is idle (an SSE connection between events) or a
//     slow but steady download is not.
//   - Connections over the listener's cap are answered 503 and closed at
//     once, those over a client address's cap 429 (an IPv6 client counts by
//     its /64), so that no one address can take every slot.
//
// It owns those counts and deadlines; it knows nothing of routing,
// authentication or what a request means. A hijacked connection (a
// WebSocket) keeps the write bound and its slot but no read bound: its
// protocol decides when it is idle.
package connlimit
