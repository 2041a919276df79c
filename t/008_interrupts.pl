# 008_interrupts.pl -- PostgreSQL's own interrupt handling runs during a
# generation.
#
# The glue drives the decoder one step (one token) at a time and calls
# CHECK_FOR_INTERRUPTS() between steps, so every interrupt PostgreSQL serves
# there works while the model generates, not only the cancel and terminate
# that the engine's abort poll sees:
#   - pg_log_backend_memory_contexts() is answered within seconds while the
#     generation goes on (before, only when the statement had ended: hours
#     for this one);
#   - with client_connection_check_interval, a client that goes away ends
#     its backend within seconds instead of leaving it generating for
#     nobody;
# and the server never restarts.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use Phi3TAP;

my $big = model_path('big');
my $node = new_node(
	'main',
	"phi3.model = '$big'",
	'phi3.max_tokens_limit = 131072',
	'phi3.max_context_size = 131072');
my $started = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

my $setup = 'SET phi3.context_size = 131072';
my $long = "SELECT length(phi3_complete('Once upon a time', 120000))";

my $monitor = Phi3TAP::Session->new($node);

# Wait until $cond->() is true, at most $timeout seconds; true if it became so.
sub wait_for
{
	my ($cond, $timeout) = @_;
	my $deadline = time() + $timeout;
	while (time() < $deadline)
	{
		return 1 if $cond->();
		Time::HiRes::sleep(0.1);
	}
	return 0;
}

# 1. a memory-context dump is served in the middle of the generation
{
	my $s = Phi3TAP::Session->new($node);
	my $pid = $s->pid;
	$s->query_safe($setup);
	$s->send($long);
	ok(wait_until_active($monitor, $s, '%phi3_complete(%120000))%', 60),
		'the long generation is running');
	ok(wait_cpu_seconds($pid, 1.0, 60), 'the backend is computing')
	  or die "the generating backend does not compute";

	is($monitor->query_safe("SELECT pg_log_backend_memory_contexts($pid)"),
		't', 'asked the generating backend to log its memory contexts');
	ok( wait_for(
			sub { slurp_log($node) =~ /logging memory contexts of PID $pid/ }, 20),
		'the backend logged its memory contexts while generating');
	is( $monitor->query_safe(
			"SELECT state FROM pg_stat_activity WHERE pid = $pid"),
		'active',
		'and its generation is still running');

	$monitor->query_safe("SELECT pg_cancel_backend($pid)");
	my $r = $s->wait_result(60);
	like($r->{stderr}, qr/57014/, 'then a cancel ends it');
	$s->quit;
}

# 2. a client that disappears ends its backend (client_connection_check_interval)
{
	my $s = Phi3TAP::Session->new($node);
	my $pid = $s->pid;
	$s->query_safe($setup);
	$s->query_safe("SET client_connection_check_interval = '100ms'");
	$s->send($long);
	ok(wait_until_active($monitor, $s, '%phi3_complete(%120000))%', 60),
		'the second long generation is running');
	ok(wait_cpu_seconds($pid, 1.0, 60), 'the second backend is computing');

	# kill psql itself: the connection's socket closes, no cancel is sent
	my $t0 = time();
	$s->{run}->kill_kill;
	$s->{exited} = 1;
	my $gone = wait_for(
		sub {
			$monitor->query_safe(
				"SELECT count(*) FROM pg_stat_activity WHERE pid = $pid") eq '0';
		},
		30);
	ok($gone, 'the backend of the vanished client has ended');
	note sprintf('backend gone %.2f s after its client', time() - $t0);
	like(slurp_log($node), qr/connection to client lost/,
		'the server log says the connection to the client was lost');
}

$monitor->quit;
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$started, 'the postmaster never restarted');
is(server_log_crashes($node), '', 'no backend crashed');

$node->stop;
done_testing();
