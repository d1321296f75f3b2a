package demo

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Scenario is a kind of spike, with its culprit.
type Scenario struct {
	Name        string
	Description string
	// What `top` should rank first: the endpoint, the function (and the
	// function that calls it, when the culprit is a call that waits), the
	// query, the database wait and the process outside PHP.
	Endpoint, Function, Caller, QueryContains, WaitEventType, Process string
}

// The culprits' sizes.
const (
	// cartHold is how long GET /cart holds the visitor's session.
	cartHold = 250 * time.Millisecond
	// partnerDelay is how long the partner service takes to answer.
	partnerDelay = 1500 * time.Millisecond
	// cronCPU is the CPU time one run of the recommendations job spends.
	cronCPU = 12 * time.Second
	// hogCount is how many bvbackup processes burn a core each.
	hogCount = 2
)

// Scenarios are the spikes the demo can make.
var Scenarios = []Scenario{
	{Name: "cpu", Description: "GET /report on every worker: a price simulation burning CPU in App\\Pricing::recalculate",
		Endpoint: "GET /report", Function: `App\Pricing::recalculate`},
	{Name: "slow-sql", Description: "GET /slow-sql on every worker: a report whose query sleeps in the database",
		Endpoint: "GET /slow-sql", QueryContains: "pg_sleep"},
	{Name: "locks", Description: "the close-books cron job holds order 7 locked while every worker tries POST /orders/7/pay",
		QueryContains: "UPDATE orders SET status", WaitEventType: "Lock"},
	{Name: "stuck", Description: "GET /stuck on every worker: requests waiting on a lock nobody releases, killed by request_terminate_timeout",
		Endpoint: "GET /stuck"},
	{Name: "session", Description: fmt.Sprintf("GET /cart on every worker with one visitor's session cookie: each request holds the PHP session %s, the others wait in session_start()", cartHold),
		Endpoint: "GET /cart", Function: "session_start", Caller: `App\Controller\CartController::show`},
	{Name: "partner", Description: fmt.Sprintf("GET /partner/quote on every worker: the partner service answers after %s, the workers wait in fgets()", partnerDelay),
		Endpoint: "GET /partner/quote", Function: "fgets", Caller: `App\PartnerClient::quote`},
	{Name: "process", Description: fmt.Sprintf("%d %s processes (not PHP) burn a core each while light PHP traffic goes on", hogCount, hogName),
		Process: hogName},
	{Name: "cron", Description: fmt.Sprintf("one run of the rebuild-recommendations cron job: %s of CPU in App\\Recommendations::score", cronCPU),
		Endpoint: "CLI bin/rebuild-recommendations.php", Function: `App\Recommendations::score`},
}

// ScenarioByName returns the scenario called name.
func ScenarioByName(name string) (Scenario, error) {
	var names []string
	for _, s := range Scenarios {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return Scenario{}, fmt.Errorf("unknown scenario %q (one of %s)", name, strings.Join(names, ", "))
}

// Spike makes the scenario's spike for d, on top of the baseline traffic.
// A cron job the spike starts (the cron scenario) runs to its end, so the
// spike lasts until both d has passed and the job has finished.
func (s *Stack) Spike(ctx context.Context, sc Scenario, d time.Duration) error {
	s.logf("spike %q for %s: %s", sc.Name, d, sc.Description)
	var visitor http.Header
	switch sc.Name {
	case "cpu", "slow-sql", "stuck", "locks", "process", "partner", "cron":
	case "session":
		var err error
		if visitor, err = s.visit(ctx, "GET /cart"); err != nil {
			return fmt.Errorf("cannot make the session spike: %w", err)
		}
	default:
		return fmt.Errorf("unknown scenario %q", sc.Name)
	}
	spike, end := context.WithCancel(ctx)
	defer end()
	var wg, jobs sync.WaitGroup
	s.loop(spike, &wg, 1, 100*time.Millisecond, nil, baselineRequests...)
	workers := s.opts.Children
	switch sc.Name {
	case "cpu":
		s.loop(spike, &wg, workers, 0, nil, "GET /report")
	case "slow-sql":
		s.loop(spike, &wg, workers, 0, nil, "GET /slow-sql")
	case "stuck":
		s.loop(spike, &wg, workers, 0, nil, "GET /stuck")
	case "locks":
		// The job holds the row for a little less than php-fpm's
		// request_terminate_timeout, again and again.
		hold := max(s.opts.TerminateTimeout-2*time.Second, time.Second)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for spike.Err() == nil {
				_, _ = s.Shop.RunCLI(context.Background(), "bin/close-books.php", "7", fmt.Sprintf("%.1f", hold.Seconds()))
			}
		}()
		s.loop(spike, &wg, workers, 0, nil, "POST /orders/7/pay")
	case "session":
		s.loop(spike, &wg, workers, 0, visitor, "GET /cart")
	case "partner":
		s.loop(spike, &wg, workers, 0, nil, "GET /partner/quote")
	case "process":
		if err := s.hogs.start(spike, &wg, s.opts.Dir, hogCount); err != nil {
			end()
			wg.Wait()
			return err
		}
	case "cron":
		jobs.Add(1)
		go func() {
			defer jobs.Done()
			if _, err := s.Shop.RunCLI(ctx, "bin/rebuild-recommendations.php", fmt.Sprint(cronCPU.Seconds())); err != nil {
				s.logf("the cron job failed: %v", err)
			}
		}()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
	jobs.Wait()
	end()
	wg.Wait()
	return nil
}
