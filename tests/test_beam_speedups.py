"""transforms.beam_speedups: Beam still tells stateful DoFns from plain ones,
and works their specs out once per DoFn instead of at every question."""

import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import userstate

from transforms import beam_speedups  # installs itself on import

COUNT = userstate.ReadModifyWriteStateSpec("count", VarIntCoder())


class Numbering(beam.DoFn):
    """Numbers each key's values: needs its state, so it must stay stateful."""

    def process(self, element, count=beam.DoFn.StateParam(COUNT)):  # noqa: B008 (Beam's form)
        key, value = element
        seen = (count.read() or 0) + 1
        count.write(seen)
        yield key, value, seen


def test_stateful_and_plain_dofns_are_told_apart():
    stateful, plain = Numbering(), beam.Map(len).fn
    assert userstate.is_stateful_dofn(stateful)
    assert not userstate.is_stateful_dofn(plain)
    state_specs, timer_specs = userstate.get_dofn_specs(stateful)
    assert (state_specs, timer_specs) == ({COUNT}, set())
    state_specs.clear()  # a caller's own set: the next answer is unchanged
    assert userstate.get_dofn_specs(stateful) == ({COUNT}, set())


def test_specs_are_worked_out_once_per_dofn():
    calls = []
    compute = userstate.get_dofn_specs.computes
    counted = beam_speedups._specs_once(lambda dofn: calls.append(dofn) or compute(dofn))
    first, second = Numbering(), Numbering()
    for _ in range(5):
        assert counted(first) == ({COUNT}, set())
    counted(second)
    assert calls == [first, second]


def test_a_stateful_pipeline_still_runs_with_its_state():
    with TestPipeline() as pipeline:
        numbered = (pipeline
                    | beam.Create([("a", 1), ("b", 2), ("a", 3)])
                    | beam.ParDo(Numbering())
                    | beam.Map(lambda row: (row[0], row[2])))
        assert_that(numbered, equal_to([("a", 1), ("a", 2), ("b", 1)]))
