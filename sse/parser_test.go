package sse

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
)

// parser is an event stream parser written from the WHATWG HTML standard,
// section 9.2.6 "Interpreting an event stream", to read back what the
// writer wrote exactly as a browser's EventSource would.
type parser struct {
	r       *bufio.Reader
	started bool // the BOM check is done

	lastID string          // the last event ID buffer
	typ    string          // the event type buffer
	data   strings.Builder // the data buffer
	Retry  int64           // the reconnection time in ms; -1 until set

	// OnComment, if set, is called with each comment line, without its colon.
	OnComment func(string)
}

// A parsed event, as an EventSource dispatches it.
type parsed struct {
	ID   string // lastEventId
	Type string // "message" when the stream gave none
	Data string
}

func newParser(r io.Reader) *parser { return &parser{r: bufio.NewReader(r), Retry: -1} }

// readLine reads a line ended by CRLF, LF or CR. At the end of the stream a
// line without an ending is returned with io.EOF: the standard discards it
// (an incomplete event is not dispatched).
func (p *parser) readLine() (string, error) {
	if !p.started {
		p.started = true
		if b, err := p.r.Peek(3); err == nil && bytes.Equal(b, []byte("\xEF\xBB\xBF")) {
			p.r.Discard(3)
		}
	}
	var line []byte
	for {
		c, err := p.r.ReadByte()
		if err != nil {
			return string(line), err
		}
		switch c {
		case '\n':
			return string(line), nil
		case '\r':
			if next, err := p.r.Peek(1); err == nil && next[0] == '\n' {
				p.r.Discard(1)
			}
			return string(line), nil
		}
		line = append(line, c)
	}
}

// Next returns the next event dispatched, or io.EOF (io.ErrUnexpectedEOF
// if the stream ended inside an event).
func (p *parser) Next() (parsed, error) {
	for {
		line, err := p.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) && (line != "" || p.data.Len() > 0 || p.typ != "") {
				return parsed{}, io.ErrUnexpectedEOF
			}
			return parsed{}, err
		}
		if line == "" {
			if ev, ok := p.dispatch(); ok {
				return ev, nil
			}
			continue
		}
		if line[0] == ':' {
			if p.OnComment != nil {
				p.OnComment(strings.TrimPrefix(line[1:], " "))
			}
			continue
		}
		field, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch field {
		case "event":
			p.typ = value
		case "data":
			p.data.WriteString(value)
			p.data.WriteByte('\n')
		case "id":
			if !strings.Contains(value, "\x00") {
				p.lastID = value
			}
		case "retry":
			if value != "" && strings.Trim(value, "0123456789") == "" {
				var n int64
				for _, c := range value {
					n = n*10 + int64(c-'0')
				}
				p.Retry = n
			}
		}
	}
}

func (p *parser) dispatch() (parsed, bool) {
	if p.data.Len() == 0 {
		p.typ = ""
		return parsed{}, false
	}
	data := strings.TrimSuffix(p.data.String(), "\n")
	typ := p.typ
	if typ == "" {
		typ = "message"
	}
	p.data.Reset()
	p.typ = ""
	return parsed{ID: p.lastID, Type: typ, Data: data}, true
}

// parseAll parses a whole stream.
func parseAll(b []byte) (events []parsed, comments []string, retry int64, err error) {
	p := newParser(bytes.NewReader(b))
	p.OnComment = func(c string) { comments = append(comments, c) }
	for {
		ev, err := p.Next()
		if err == io.EOF {
			return events, comments, p.Retry, nil
		}
		if err != nil {
			return events, comments, p.Retry, err
		}
		events = append(events, ev)
	}
}

// normalize is what a client receives for data: every line ending a \n.
func normalize(data string) string {
	return strings.ReplaceAll(strings.ReplaceAll(data, "\r\n", "\n"), "\r", "\n")
}
