package demo

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// request sends one request with header's fields (nil: none) and drains
// the answer.
func (s *Stack) request(ctx context.Context, method, path string, header http.Header) {
	req, err := http.NewRequestWithContext(ctx, method, s.Shop.URL+path, nil)
	if err != nil {
		return
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := s.client.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// visit sends one request ("METHOD /path") as a new visitor and returns
// the header that makes later requests come from the same visitor: the
// cookies the shop set (its PHP session).
func (s *Stack) visit(ctx context.Context, request string) (http.Header, error) {
	method, path, _ := strings.Cut(request, " ")
	req, err := http.NewRequestWithContext(ctx, method, s.Shop.URL+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", request, resp.Status)
	}
	var cookies []string
	for _, c := range resp.Cookies() {
		cookies = append(cookies, (&http.Cookie{Name: c.Name, Value: c.Value}).String())
	}
	if len(cookies) == 0 {
		return nil, fmt.Errorf("%s set no cookie", request)
	}
	return http.Header{"Cookie": {strings.Join(cookies, "; ")}}, nil
}

// Loop runs workers goroutines sending the requests ("METHOD /path") in
// turn, pause between two, until the returned stop is called (it waits for
// them) or ctx ends.
func (s *Stack) Loop(ctx context.Context, workers int, pause time.Duration, requests ...string) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	s.loop(ctx, &wg, workers, pause, nil, requests...)
	return func() { cancel(); wg.Wait() }
}

// Request sends one request ("METHOD /path") in the background.
func (s *Stack) Request(ctx context.Context, request string) {
	method, path, _ := strings.Cut(request, " ")
	go s.request(ctx, method, path, nil)
}

// loop runs workers goroutines sending the requests ("METHOD /path") with
// header's fields in turn, pause between two, until ctx ends.
func (s *Stack) loop(ctx context.Context, wg *sync.WaitGroup, workers int, pause time.Duration, header http.Header, requests ...string) {
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ctx.Err() == nil; i++ {
				method, path, _ := strings.Cut(requests[i%len(requests)], " ")
				s.request(ctx, method, path, header)
				if pause > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(pause):
					}
				}
			}
		}()
	}
}

// baselineRequests are the everyday traffic: cheap pages, order views and
// quotes. None runs App\Recommendations::score: the cron scenario's job is
// the only place it runs, so the function first reaches Prometheus in that
// job's one end message, as a cron job's own code does.
var baselineRequests = []string{"GET /cheap", "GET /orders/11", "GET /cheap", "GET /orders/12", "GET /quote/3", "GET /orders/13"}

// Baseline sends light everyday traffic for d.
func (s *Stack) Baseline(ctx context.Context, d time.Duration) {
	s.logf("baseline: light traffic for %s", d)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	s.loop(ctx, &wg, 1, 100*time.Millisecond, nil, baselineRequests...)
	wg.Wait()
}
