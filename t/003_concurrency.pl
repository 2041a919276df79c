# 003_concurrency.pl -- four sessions generating at the same time.
#
# Four sessions each run six greedy generations (three prompts, in a
# different order per session, twice) on the big test model at the same
# time.  Every result must equal the one a single session gets alone, with
# no error.  Then, with the backends idle, their memory: the weights are a
# shared read-only mapping of the model file, so
#   - every backend maps the file, with most of it resident, and no private
#     (copied or dirtied) page in that mapping;
#   - the four backends together hold about one copy of the file (the sum
#     of their proportional set sizes of the mapping is at most the file
#     size, while the sum of their resident sizes is several times more);
#   - each backend's private memory (anonymous, private dirty: KV cache,
#     scratch, PostgreSQL's own) is far below the size of the file.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use Phi3TAP;

my $big = model_path('big');
my $file_kb = (-s $big) / 1024;
my $node = new_node('main', "phi3.model = '$big'", 'phi3.threads = 1');

my $sys = "'You are a helpful assistant.'";
my @calls = (
	"SELECT to_json(phi3_generate('Name three colors.', $sys, 24))",
	"SELECT to_json(phi3_generate('Write a haiku about tables.', $sys, 24))",
	"SELECT to_json(phi3_complete('Once upon a time', 24))");

# One session alone
my $alone = Phi3TAP::Session->new($node);
my @expected = map { $alone->query_safe($_) } @calls;
$alone->quit;
is(scalar(grep { $_ ne '' && $_ ne '""' } @expected), 3, 'a single session generates three texts');

# Four sessions at once: session i runs the calls rotated by i, twice
my $monitor = Phi3TAP::Session->new($node);
my @sessions = map { Phi3TAP::Session->new($node) } 1 .. 4;
my @orders;
for my $i (0 .. 3)
{
	my @order = map { ($_ + $i) % 3 } 0 .. 2;
	push @order, @order;
	push @orders, \@order;
	$sessions[$i]->send(join(";\n", map { $calls[$_] } @order));
}

# How many of them run at the same time (polled until all are done)
my $pids = join(',', map { $_->pid } @sessions);
my $max_active = 0;
my $deadline = time() + 300;
while (time() < $deadline && grep { !$_->finished } @sessions)
{
	my $n = $monitor->query_safe(
		"SELECT count(*) FROM pg_stat_activity WHERE pid IN ($pids) AND state = 'active'");
	$max_active = $n if $n > $max_active;
	sleep(0.02);
}
note "at most $max_active sessions were generating at the same time";
is($max_active, 4, 'the four sessions generated at the same time');

for my $i (0 .. 3)
{
	my $r = $sessions[$i]->wait_result(300);
	ok($r->{done}, "session $i: finished");
	is($r->{stderr}, '', "session $i: no error");
	my @got = split /\n/, $r->{stdout};
	my @want = map { $expected[$_] } @{ $orders[$i] };
	is_deeply(\@got, \@want, "session $i: six results equal the single-session results");
}

# The model as each backend sees it
for my $i (0 .. 3)
{
	my $info = $sessions[$i]->query_safe(
		"SELECT concat_ws(' ', i->>'path', i->>'weights_mapped', i->>'preloaded', "
		  . "i->>'context_memory') FROM phi3_model_info() AS i");
	my ($path, $mapped, $preloaded, $ctx_mem) = split / /, $info;
	is($path, $big, "session $i: model_info names the model");
	is($mapped, 'true', "session $i: model_info says the weights are mapped");
	is($preloaded, 'false', "session $i: not preloaded");
	note sprintf('session %d: context_memory %.1f MB', $i, $ctx_mem / 1048576);
}

# Memory of the idle backends
my ($sum_pss, $sum_rss) = (0, 0);
for my $i (0 .. 3)
{
	my $pid = $sessions[$i]->pid;
	my $all = smaps_rollup($pid);
	my $map = smaps_of_file($pid, $big);
	note sprintf(
		'backend %d: model mapping rss %.1f MB pss %.1f MB shared_clean %.1f MB; '
		  . 'process anonymous %.1f MB private_dirty %.1f MB rss %.1f MB; file %.1f MB',
		$pid, $map->{Rss} / 1024, $map->{Pss} / 1024, $map->{Shared_Clean} / 1024,
		$all->{Anonymous} / 1024, $all->{Private_Dirty} / 1024, $all->{Rss} / 1024,
		$file_kb / 1024);
	cmp_ok($map->{mappings}, '>=', 1, "backend $i maps the model file");
	cmp_ok($map->{Rss}, '>=', 0.5 * $file_kb,
		"backend $i: at least half of the file is resident in its mapping");
	is($map->{Anonymous} + $map->{Private_Dirty}, 0,
		"backend $i: no private copy of any page of the mapping");
	cmp_ok($all->{Anonymous}, '<', 0.25 * $file_kb,
		"backend $i: anonymous memory is far below the model size");
	cmp_ok($all->{Private_Dirty}, '<', 0.25 * $file_kb,
		"backend $i: private dirty memory is far below the model size");
	$sum_pss += $map->{Pss};
	$sum_rss += $map->{Rss};
}
cmp_ok($sum_rss, '>=', 2 * $file_kb,
	'the four backends together map more than twice the file');
cmp_ok($sum_pss, '<=', 1.01 * $file_kb,
	'but hold one copy of it (sum of proportional set sizes <= file size)');

$_->quit for @sessions;
$monitor->quit;
is(server_log_crashes($node), '', 'the server log reports no crashed backend');

$node->stop;
done_testing();
