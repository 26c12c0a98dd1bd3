package otelcancel

import (
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/cancelable-go/cancelable/cancel"
)

// Span event names of the events the websocket and SSE wrappers record
// (Operation.Event): "cancel." and the event's name. Any other event E
// becomes a span event named "cancel." + E as well.
const (
	EventWSOpen   = "cancel.ws.open"
	EventWSClose  = "cancel.ws.close"
	EventSSEOpen  = "cancel.sse.open"
	EventSSEClose = "cancel.sse.close"
)

// The events and counts of the wrappers (Operation.Event and
// Operation.Count), and the event attributes the metrics read.
const (
	eventWSOpen   = "ws.open"
	eventWSClose  = "ws.close"
	eventSSEOpen  = "sse.open"
	eventSSEClose = "sse.close"

	countWSIn      = "ws.messages.in"
	countWSOut     = "ws.messages.out"
	countSSEEvents = "sse.events"

	attrWSCloseCode = "ws.close.code"
	attrReason      = "cancel.reason"
)

// Values of KeyWSDirection.
const (
	DirectionIn  = "in"  // messages read from the peer
	DirectionOut = "out" // messages written to the peer
)

// CloseCodeOther is the cancel.ws.close.code of the close codes outside the
// closed set the metrics name. The set is:
//
//   - "1000" to "1015": the codes of RFC 6455 and the IANA registry (1005,
//     1006 and 1015 are never sent, but a connection that vanished without
//     a close frame is recorded as 1006);
//   - "4000" to "4099": the private-use codes applications, wscancel
//     included, give their own meanings;
//   - "other": anything else (1016-3999, 4100-4999, invalid codes).
//
// That keeps cancel.ws.closes to a bounded number of series per name,
// however peers close.
const CloseCodeOther = "other"

// The closed set of close codes, as indices of closeCodes.
const (
	stdCloseMin, stdCloseMax = 1000, 1015
	appCloseMin, appCloseMax = 4000, 4099
	numStdCodes              = stdCloseMax - stdCloseMin + 1
	numCloseCodes            = numStdCodes + appCloseMax - appCloseMin + 1 + 1 // and other
)

// closeCodes holds the label of each close code index.
var closeCodes = func() (labels [numCloseCodes]string) {
	for i := range numCloseCodes - 1 {
		code := stdCloseMin + i
		if i >= numStdCodes {
			code = appCloseMin + i - numStdCodes
		}
		labels[i] = strconv.Itoa(code)
	}
	labels[numCloseCodes-1] = CloseCodeOther
	return labels
}()

// closeCodeIndex returns the index in closeCodes of a close code.
func closeCodeIndex(code int64) int {
	switch {
	case code >= stdCloseMin && code <= stdCloseMax:
		return int(code - stdCloseMin)
	case code >= appCloseMin && code <= appCloseMax:
		return numStdCodes + int(code-appCloseMin)
	}
	return numCloseCodes - 1
}

// wsSeries holds the series of the websocket connections of one name.
type wsSeries struct {
	label    string       // the name of the series (OtherName beyond the cap)
	active   atomic.Int64 // connections open
	messages [2]countOpts // by direction: in, out
	mu       sync.Mutex   // guards closes
	closes   map[closeKey]*countOpts
}

// closeKey is a series of cancel.ws.closes within a name.
type closeKey struct {
	code   uint8 // index in closeCodes
	reason cancel.Reason
}

// countOpts is a count and its attribute set.
type countOpts struct {
	attrOpts
	n atomic.Int64
}

// sseSeries holds the series of the SSE streams of one name.
type sseSeries struct {
	active atomic.Int64                  // streams open
	events atomic.Int64                  // events sent
	ends   [len(outcomes)][]atomic.Int64 // by outcome, then reason, as nameSeries.ended
}

// wsSeries returns the websocket series of the name, making them the first
// time: its message counts and active connections then exist at zero.
func (s *nameSeries) wsSeries() *wsSeries {
	if ws := s.ws.Load(); ws != nil {
		return ws
	}
	name := KeyOperationName.String(s.label)
	ws := &wsSeries{label: s.label, closes: make(map[closeKey]*countOpts)}
	ws.messages[0].attrOpts = newAttrOpts(name, KeyWSDirection.String(DirectionIn))
	ws.messages[1].attrOpts = newAttrOpts(name, KeyWSDirection.String(DirectionOut))
	if s.ws.CompareAndSwap(nil, ws) {
		return ws
	}
	return s.ws.Load()
}

// sseSeries returns the SSE series of the name, making them the first time:
// its event count, active streams and ends by outcome and reason then exist
// at zero.
func (s *nameSeries) sseSeries() *sseSeries {
	if sse := s.sse.Load(); sse != nil {
		return sse
	}
	sse := new(sseSeries)
	for i := range sse.ends {
		sse.ends[i] = make([]atomic.Int64, numReasons)
	}
	if s.sse.CompareAndSwap(nil, sse) {
		return sse
	}
	return s.sse.Load()
}

// close counts a closed connection.
func (ws *wsSeries) close(code int, reason cancel.Reason) {
	k := closeKey{code: uint8(code), reason: reason}
	ws.mu.Lock()
	c := ws.closes[k]
	if c == nil {
		c = &countOpts{attrOpts: newAttrOpts(KeyOperationName.String(ws.label),
			KeyWSCloseCode.String(closeCodes[code]), KeyReason.String(reason.String()))}
		ws.closes[k] = c
	}
	ws.mu.Unlock()
	c.n.Add(1)
}

func (o *Observer) reportWS(obs metric.Observer, s *nameSeries, ws *wsSeries) {
	obs.ObserveInt64(o.wsActive, ws.active.Load(), s.name.observe...)
	for i := range ws.messages {
		m := &ws.messages[i]
		obs.ObserveInt64(o.wsMessages, m.n.Load(), m.observe...)
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for _, c := range ws.closes {
		obs.ObserveInt64(o.wsCloses, c.n.Load(), c.observe...)
	}
}

func (o *Observer) reportSSE(obs metric.Observer, s *nameSeries, sse *sseSeries) {
	obs.ObserveInt64(o.sseActive, sse.active.Load(), s.name.observe...)
	obs.ObserveInt64(o.sseEvents, sse.events.Load(), s.name.observe...)
	for i := range sse.ends {
		for r := range sse.ends[i] {
			if opts := s.ended[i][r].observe; opts != nil {
				obs.ObserveInt64(o.sseEnds, sse.ends[i][r].Load(), opts...)
			}
		}
	}
}

// ObserveEvent adds a span event named "cancel." + e.Name with e's
// attributes, mapped as those of progress reports, to the operation's span
// (its own or the one it adopted). The events of the websocket and SSE
// wrappers also drive their metrics:
//
//   - "ws.open" counts a connection as open (cancel.ws.connections.active)
//     until the operation ends, when its duration is recorded
//     (cancel.ws.connection.duration);
//   - "ws.close" counts a close (cancel.ws.closes) with its attributes
//     "ws.close.code" (an integer, recorded as in CloseCodeOther) and
//     "cancel.reason" (a Reason's string; any other counts as "");
//   - "sse.open" counts a stream as open (cancel.sse.streams.active) until
//     the operation ends, when its end (cancel.sse.ends) and duration
//     (cancel.sse.stream.duration) are recorded.
//
// Each of them counts once per operation; repeats only add span events.
func (o *Observer) ObserveEvent(op *cancel.Operation, e cancel.Event) {
	s := o.state(op)
	if s == nil {
		return // started before this observer was set
	}
	name := ""
	switch e.Name {
	case eventWSOpen:
		name = EventWSOpen
		if s.setStream(wsOpen) {
			s.series.wsSeries().active.Add(1)
		}
	case eventWSClose:
		name = EventWSClose
		if s.setStream(wsClosed) {
			code, reason := closeOf(e.Attrs)
			s.series.wsSeries().close(code, reason)
		}
	case eventSSEOpen:
		name = EventSSEOpen
		if s.setStream(sseOpen) {
			s.series.sseSeries().active.Add(1)
		}
	case eventSSEClose:
		name = EventSSEClose
	}
	if !s.span.IsRecording() {
		return
	}
	if name == "" {
		name = "cancel." + e.Name
	}
	var opts [2]trace.EventOption
	n := 0
	if !e.Time.IsZero() {
		opts[n] = trace.WithTimestamp(e.Time)
		n++
	}
	if len(e.Attrs) > 0 {
		opts[n] = trace.WithAttributes(appendSlogAttrs(make([]attribute.KeyValue, 0, len(e.Attrs)), "", e.Attrs)...)
		n++
	}
	s.span.AddEvent(name, opts[:n]...)
}

// closeOf returns the close code index and the reason of a "ws.close"
// event.
func closeOf(attrs []slog.Attr) (code int, reason cancel.Reason) {
	code = numCloseCodes - 1
	for _, a := range attrs {
		switch a.Key {
		case attrWSCloseCode:
			switch v := a.Value.Resolve(); v.Kind() {
			case slog.KindInt64:
				code = closeCodeIndex(v.Int64())
			case slog.KindUint64:
				if u := v.Uint64(); u <= appCloseMax {
					code = closeCodeIndex(int64(u))
				}
			}
		case attrReason:
			if v := a.Value.Resolve(); v.Kind() == slog.KindString {
				reason = reasonNamed(v.String())
			}
		}
	}
	return code, reason
}

// reasonNamed returns the Reason whose string is s, or the zero Reason.
func reasonNamed(s string) cancel.Reason {
	for r := range cancel.Reason(numReasons) {
		if r.String() == s {
			return r
		}
	}
	return 0
}

// ObserveCount counts the websocket messages and SSE events of an
// operation: "ws.messages.in" and "ws.messages.out" in cancel.ws.messages
// (by direction), "sse.events" in cancel.sse.events. Other names, and n
// below 1, are ignored. It allocates nothing: one atomic add.
func (o *Observer) ObserveCount(op *cancel.Operation, name string, n int64) {
	const wsIn, wsOut, sseEvents = 1, 2, 3
	var kind int
	switch name {
	case countWSIn:
		kind = wsIn
	case countWSOut:
		kind = wsOut
	case countSSEEvents:
		kind = sseEvents
	default:
		return
	}
	if n <= 0 {
		return
	}
	s := o.state(op)
	if s == nil {
		return
	}
	switch kind {
	case wsIn:
		s.series.wsSeries().messages[0].n.Add(n)
	case wsOut:
		s.series.wsSeries().messages[1].n.Add(n)
	default:
		s.series.sseSeries().events.Add(n)
	}
}

// endStream records the end of an operation that was a websocket
// connection or an SSE stream, lasting d seconds.
func (o *Observer) endStream(s *opState, flags uint32, d float64, outcome int, reason cancel.Reason, ended *endCount) {
	if flags&wsOpen != 0 {
		s.series.wsSeries().active.Add(-1)
		o.wsDuration.Record(s, d, ended.record...)
	}
	if flags&sseOpen != 0 {
		sse := s.series.sseSeries()
		sse.ends[outcome][reason].Add(1)
		sse.active.Add(-1)
		o.sseDuration.Record(s, d, ended.record...)
	}
}
