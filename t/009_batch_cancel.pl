# 009_batch_cancel.pl -- a batched UPDATE cancelled mid-way writes nothing.
#
# An UPDATE ... FROM phi3_summarize_rows(...) over 24 documents runs on the
# big test model with phi3.batch_size = 4 (several rows in the decoder at
# once, more waiting for a slot).  Once it computes, another session
# cancels it: the statement must fail with the cancel error within a few
# seconds (the whole batch stops within one decoder step), no row may have
# been written, and the same backend must then run a batch whose results
# equal the one-row function's.  The server must not restart.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use Phi3TAP;

my $big = model_path('big');
my $node = new_node('main', "phi3.model = '$big'");
my $started = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

$node->safe_psql('postgres', q{
	CREATE TABLE reports (id int PRIMARY KEY, body text, summary text);
	INSERT INTO reports
	SELECT i, 'Report ' || i || ': ' || repeat('sales rose in region ' || i || '. ', 8), NULL
	FROM generate_series(1, 24) AS i;
});

my $update = q{UPDATE reports r SET summary = s.summary
	FROM phi3_summarize_rows('SELECT id, body FROM reports ORDER BY id', NULL::int, 200) s
	WHERE r.id = s.key};

my $monitor = Phi3TAP::Session->new($node);
my $s = Phi3TAP::Session->new($node);
my $pid = $s->pid;
$s->query_safe('SET phi3.batch_size = 4');
$s->send($update);
ok(wait_until_active($monitor, $s, '%phi3_summarize_rows%', 60), 'the batched UPDATE is running');
ok(wait_cpu_seconds($pid, 1.5, 120), 'the backend is computing')
  or die "the batching backend does not compute";

my $t_cancel = time();
is($monitor->query_safe("SELECT pg_cancel_backend($pid)"), 't', 'cancelled the UPDATE');
my $r = $s->wait_result(60);
ok($r->{done}, 'the statement ended');
like($r->{stderr}, qr/57014: canceling statement due to user request/,
	'with the cancel error');
my $latency = $r->{at} - $t_cancel;
note sprintf('cancel took effect after %.3f s', $latency);
cmp_ok($latency, '<', 5, 'within 5 s of the cancel');

is($monitor->query_safe('SELECT count(*) FROM reports WHERE summary IS NOT NULL'),
	'0', 'no row was written');
is($s->query_safe('SELECT pg_backend_pid()'), $pid, 'the same backend answers');

# the backend's decoder is usable: a small batch equals the one-row results
my $same = $s->query_safe(q{
	SELECT phi3_summarize_batch(ARRAY(SELECT body FROM reports WHERE id <= 3 ORDER BY id), 5)
	     = ARRAY(SELECT phi3_summarize(body, 5) FROM reports WHERE id <= 3 ORDER BY id)});
is($same, 't', 'after the cancel a batch gives the one-row results');

$s->quit;
$monitor->quit;
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$started, 'the postmaster never restarted');
is(server_log_crashes($node), '', 'no backend crashed');
$node->stop;
done_testing();
