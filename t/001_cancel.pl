# 001_cancel.pl -- pg_cancel_backend stops a running generation.
#
# A session starts a generation of 120000 tokens on the big test model
# (hours of work on any machine, and the model does not stop early); once
# the backend is computing, another session cancels it.  The statement must
# fail with PostgreSQL's cancel error (57014) within a few seconds of the
# cancel (the engine polls the pending interrupt between layers and
# tokens), the backend must survive it (same pid, and its next generation
# gives the same text as a fresh session), and the postmaster must not have
# restarted.  Done twice in the same session, so that a context left by an
# aborted generation is itself aborted again.
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
my $short = "SELECT phi3_complete('Once upon a time', 16)";
my $long = "SELECT length(phi3_complete('Once upon a time', 120000))";

# The expected text: a fresh session, same settings
my $fresh = Phi3TAP::Session->new($node);
$fresh->query_safe($setup);
my $expected = $fresh->query_safe($short);
isnt($expected, '', 'a fresh session generates text');
$fresh->quit;

my $monitor = Phi3TAP::Session->new($node);
my $s = Phi3TAP::Session->new($node);
my $pid = $s->pid;
$s->query_safe($setup);

for my $round (1, 2)
{
	$s->send($long);
	ok(wait_until_active($monitor, $s, '%phi3_complete(%120000))%', 60),
		"round $round: the long generation is running");
	ok(wait_cpu_seconds($pid, 1.0, 60),
		"round $round: the backend is computing (used 1 s of CPU)")
	  or die "the generating backend does not compute";

	my $t_cancel = time();
	is($monitor->query_safe("SELECT pg_cancel_backend($pid)"),
		't', "round $round: pg_cancel_backend signalled the backend");
	my $r = $s->wait_result(60);
	ok($r->{done}, "round $round: the statement ended");
	is($r->{stdout}, '', "round $round: no result was returned");
	like(
		$r->{stderr},
		qr/ERROR:\s+57014: canceling statement due to user request/,
		"round $round: the statement failed with the cancel error (57014)");
	my $latency = $r->{at} - $t_cancel;
	note sprintf("round %d: statement ran %.2f s, error %.3f s after the cancel",
		$round, $r->{elapsed}, $latency);
	cmp_ok($latency, '<', 5,
		"round $round: the error arrived within 5 s of the cancel");

	is($s->query_safe('SELECT pg_backend_pid()'),
		$pid, "round $round: the same backend answers the next statement");
	is($s->query_safe($short), $expected,
		"round $round: a generation after the cancel gives the fresh session's text");
}

$s->quit;
$monitor->quit;

is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$started, 'the postmaster did not restart');
is(server_log_crashes($node), '', 'the server log reports no crashed backend');

$node->stop;
done_testing();
