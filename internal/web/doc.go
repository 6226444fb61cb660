// Package web is Berth's dashboard: pages drawn on the server from Go
// templates, a stylesheet and a small script, all embedded in the binary
// and served under /ui/ on the API address (docs/dashboard.md).
//
// It owns the dashboard's sessions (a token pasted once, or a one-use
// login link from `berth dashboard`, kept on the server behind an
// HttpOnly, SameSite=Strict cookie), its pages and forms, the SVG drawing
// of charts, trace waterfalls and state machines, and the live stream a
// page listens to.
//
// It must not hold a credential of its own or reach around the API: every
// read and every action is a request through client/ to the API's own
// handler, with the session's token, so the API decides what a user may
// see and do exactly as it does for the CLI (a viewer's action gets the
// API's 403, shown on the page). It must not poll: pages redraw when the
// API's watch names something they show, and charts when the session's
// sampler has a new point.
package web
