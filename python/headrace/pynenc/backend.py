"""``HeadraceStateBackend``: pynenc 0.4's ``BaseStateBackend`` on headrace's Rust store.

Storage, ordering, time-range paging, the status model and write-behind batching live in the
Rust core (``src/state/pynenc/``); this class only converts between pynenc's objects and the
tuples and JSON text the core exchanges. History entries cross the seam in pynenc's own
``InvocationHistory`` JSON; results, exceptions and workflow values in pynenc's serialized form.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from pynenc.app_info import AppInfo
from pynenc.exceptions import InvocationStatusOwnershipError, InvocationStatusTransitionError
from pynenc.identifiers.call_id import CallId
from pynenc.identifiers.invocation_id import InvocationId
from pynenc.identifiers.task_id import TaskId
from pynenc.invocation.status import InvocationStatus
from pynenc.models.call_dto import CallDTO
from pynenc.models.invocation_dto import InvocationDTO
from pynenc.runner.runner_context import RunnerContext
from pynenc.state_backend.base_state_backend import BaseStateBackend, InvocationHistory
from pynenc.types import Params, Result
from pynenc.workflow.workflow_identity import WorkflowIdentity

from headrace._core import PynencStore
from headrace.pynenc.config import ConfigStateBackendHeadrace
from headrace.pynenc.exceptions import deserialize_exception, serialize_exception

if TYPE_CHECKING:
    from pynenc.app import Pynenc

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_RefusalRow = tuple[str, str, str | None, str, list[str], str | None, str | None, str]


def _micros(moment: datetime) -> int:
    """Microseconds since the epoch; a naive time is UTC, as pynenc reads naive history times."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _refusal_error(row: _RefusalRow) -> Exception:
    """pynenc's own exception for a status record the store refused."""
    _invocation_id, kind, from_status, to_status, allowed, current_owner, attempted_owner, reason = row
    from_value = InvocationStatus(from_status) if from_status else None
    if kind == "transition":
        return InvocationStatusTransitionError(
            from_status=from_value,
            to_status=InvocationStatus(to_status),
            allowed_statuses=frozenset(InvocationStatus(s) for s in allowed),
        )
    return InvocationStatusOwnershipError(
        from_status=from_value,
        to_status=InvocationStatus(to_status),
        current_owner=current_owner,
        attempted_owner=attempted_owner,
        reason=reason,
    )


def _raise_refusals(rows: list[_RefusalRow]) -> None:
    if rows:
        raise _refusal_error(rows[0])


class HeadraceStateBackend(BaseStateBackend[Params, Result]):
    """A pynenc state backend on headrace's store (memory, SQLite or PostgreSQL).

    Durable by default: every write is committed when the call returns. With
    ``headrace_durability="write_behind"`` writes return at once and are committed in batches;
    reads wait for the writes before them, and :meth:`wait_for_all_async_operations` waits
    explicitly.
    """

    def __init__(self, app: Pynenc) -> None:
        super().__init__(app)
        self._store = PynencStore.open(
            self.conf.headrace_state_url,
            app.app_id,
            durability=self.conf.headrace_durability,
            transitions=self.conf.headrace_transitions,
            max_batch=int(self.conf.headrace_max_batch),
        )

    @cached_property
    def conf(self) -> ConfigStateBackendHeadrace:
        return ConfigStateBackendHeadrace(
            config_values=self.app.config_values,
            config_filepath=self.app.config_filepath,
        )

    @property
    def store(self) -> PynencStore:
        """The Rust store behind this backend."""
        return self._store

    # -- durability --------------------------------------------------------------------------

    def wait_for_all_async_operations(self) -> None:
        """Waits until every earlier write is committed (write-behind); raises a failed one."""
        self._store.flush()

    def wait_for_invocation_async_operations(self, invocation_id: str) -> None:
        """Waits until every earlier write is committed (those of ``invocation_id`` included)."""
        self._store.flush()

    def close(self) -> None:
        """Commits pending writes and closes the store; later calls raise ``StoreError``."""
        self._store.close()

    def purge(self) -> None:
        self._store.purge()

    # -- invocations -------------------------------------------------------------------------

    def _upsert_invocations(self, entries: list[tuple[InvocationDTO, CallDTO]]) -> None:
        rows = []
        for inv_dto, call_dto in entries:
            workflow = inv_dto.workflow
            rows.append(
                (
                    inv_dto.invocation_id,
                    call_dto.call_id.key,
                    call_dto.call_id.task_id.key,
                    json.dumps(call_dto.serialized_arguments),
                    inv_dto.parent_invocation_id,
                    inv_dto.parent_event_id,
                    workflow.workflow_id if workflow else None,
                    workflow.workflow_type.key if workflow else None,
                    workflow.parent_workflow_id if workflow else None,
                )
            )
        self._store.upsert_invocations(rows)

    def _get_invocation(self, invocation_id: InvocationId) -> tuple[InvocationDTO, CallDTO] | None:
        row = self._store.get_invocation(invocation_id)
        if row is None:
            return None
        inv_id, call_key, _task_key, arguments, parent_id, event_id, wf_id, wf_type, wf_parent = row
        call_id = CallId.from_key(call_key)
        workflow = (
            WorkflowIdentity(
                workflow_id=InvocationId(wf_id),
                workflow_type=TaskId.from_key(wf_type),
                parent_workflow_id=InvocationId(wf_parent) if wf_parent else None,
            )
            if wf_id and wf_type
            else None
        )
        inv_dto = InvocationDTO(
            invocation_id=InvocationId(inv_id),
            call_id=call_id,
            workflow=workflow,
            parent_invocation_id=InvocationId(parent_id) if parent_id else None,
            parent_event_id=event_id,
        )
        return inv_dto, CallDTO(call_id=call_id, serialized_arguments=json.loads(arguments))

    def get_child_invocations(self, parent_invocation_id: InvocationId) -> Iterator[InvocationId]:
        return (InvocationId(i) for i in self._store.child_invocations(parent_invocation_id))

    def get_invocations_by_parent_event(self, parent_event_id: str) -> Iterator[InvocationId]:
        return (InvocationId(i) for i in self._store.invocations_by_parent_event(parent_event_id))

    def get_invocation_ids_by_workflow(
        self, workflow_id: str | None = None, workflow_type_key: str | None = None
    ) -> Iterator[InvocationId]:
        ids = self._store.invocations_by_workflow(workflow_id or None, workflow_type_key or None)
        return (InvocationId(i) for i in ids)

    # -- history -----------------------------------------------------------------------------

    def _add_histories(self, invocation_ids: list[InvocationId], invocation_history: InvocationHistory) -> None:
        _raise_refusals(self._store.add_history_for(list(invocation_ids), invocation_history.to_json()))

    def _get_history(self, invocation_id: InvocationId) -> list[InvocationHistory]:
        return [InvocationHistory.from_json(text) for text in self._store.get_history(invocation_id)]

    def iter_history_in_timerange(
        self, start_time: datetime, end_time: datetime, batch_size: int = 100
    ) -> Iterator[list[InvocationHistory]]:
        start, end, offset = _micros(start_time), _micros(end_time), 0
        while batch := self._store.history_in_range(start, end, batch_size, offset):
            yield [InvocationHistory.from_json(text) for text in batch]
            offset += batch_size

    def iter_invocations_in_timerange(
        self, start_time: datetime, end_time: datetime, batch_size: int = 100
    ) -> Iterator[list[InvocationId]]:
        start, end, offset = _micros(start_time), _micros(end_time), 0
        while batch := self._store.invocations_in_range(start, end, batch_size, offset):
            yield [InvocationId(i) for i in batch]
            offset += batch_size

    # -- results and exceptions --------------------------------------------------------------

    def serialize_exception(self, exception: Exception) -> str:
        """pynenc's format, plus what rebuilds any exception as itself (see ``exceptions.py``)."""
        return serialize_exception(self.app, exception)

    def deserialize_exception(self, serialized: str) -> Exception:
        return deserialize_exception(self.app, serialized)

    def _set_result(self, invocation_id: InvocationId, serialized_result: str) -> None:
        self._store.set_result(invocation_id, serialized_result)

    def _get_result(self, invocation_id: InvocationId) -> str:
        value = self._store.get_result(invocation_id)
        if value is None:
            raise KeyError(f"Result for invocation {invocation_id} not found")
        return value

    def _set_exception(self, invocation_id: InvocationId, serialized_exception: str) -> None:
        self._store.set_exception(invocation_id, serialized_exception)

    def _get_exception(self, invocation_id: InvocationId) -> str:
        value = self._store.get_exception(invocation_id)
        if value is None:
            raise KeyError(f"Exception for invocation {invocation_id} not found")
        return value

    # -- workflows ---------------------------------------------------------------------------

    def set_workflow_data(self, workflow_identity: WorkflowIdentity, key: str, value: Any) -> None:
        serialized = self.app.client_data_store.serialize(value)
        self._store.set_workflow_data(workflow_identity.workflow_id, key, serialized)

    def get_workflow_data(self, workflow_identity: WorkflowIdentity, key: str, default: Any = None) -> Any:
        serialized = self._store.get_workflow_data(workflow_identity.workflow_id, key)
        if serialized is None:
            return default
        return self.app.client_data_store.deserialize(serialized)

    def store_workflow_run(self, workflow_identity: WorkflowIdentity) -> None:
        self._store.store_workflow_run(
            workflow_identity.workflow_id,
            workflow_identity.workflow_type.key,
            workflow_identity.parent_workflow_id,
        )

    def get_all_workflow_types(self) -> Iterator[TaskId]:
        return (TaskId.from_key(key) for key in self._store.workflow_types())

    def get_all_workflow_runs(self) -> Iterator[WorkflowIdentity]:
        return self._workflow_runs(None)

    def get_workflow_runs(self, workflow_type: TaskId) -> Iterator[WorkflowIdentity]:
        return self._workflow_runs(workflow_type.key)

    def _workflow_runs(self, workflow_type_key: str | None) -> Iterator[WorkflowIdentity]:
        for workflow_id, type_key, parent_id in self._store.workflow_runs(workflow_type_key):
            yield WorkflowIdentity(
                workflow_id=InvocationId(workflow_id),
                workflow_type=TaskId.from_key(type_key),
                parent_workflow_id=InvocationId(parent_id) if parent_id else None,
            )

    def store_workflow_sub_invocation(self, parent_workflow_id: InvocationId, sub_invocation_id: InvocationId) -> None:
        self._store.store_sub_invocation(parent_workflow_id, sub_invocation_id)

    def get_workflow_sub_invocations(self, workflow_id: InvocationId) -> Iterator[InvocationId]:
        return (InvocationId(i) for i in self._store.sub_invocations(workflow_id))

    # -- apps --------------------------------------------------------------------------------

    def store_app_info(self, app_info: AppInfo) -> None:
        self._store.store_app_info(app_info.app_id, app_info.to_json())

    def get_app_info(self) -> AppInfo:
        info = self._store.get_app_info(self.app.app_id)
        if info is None:
            raise KeyError(f"App info for {self.app.app_id} not found")
        return AppInfo.from_json(info)

    @staticmethod
    def discover_app_infos() -> dict[str, AppInfo]:
        """Every app registered in the store the default configuration names."""
        conf = ConfigStateBackendHeadrace()
        store = PynencStore.open(conf.headrace_state_url, "headrace-discovery")
        try:
            return {app_id: AppInfo.from_json(info) for app_id, info in store.all_app_infos()}
        finally:
            store.close()

    # -- runner contexts ---------------------------------------------------------------------

    def _store_runner_context(self, runner_context: RunnerContext) -> None:
        self._store.store_runner_contexts([(runner_context.runner_id, runner_context.to_json())])

    def _get_runner_context(self, runner_id: str) -> RunnerContext | None:
        found = self._store.runner_contexts([runner_id])
        return RunnerContext.from_json(found[0]) if found else None

    def _get_runner_contexts(self, runner_ids: list[str]) -> list[RunnerContext]:
        return [RunnerContext.from_json(text) for text in self._store.runner_contexts(list(runner_ids))]

    def get_matching_runner_contexts(self, partial_id: str) -> Iterator[RunnerContext]:
        return (RunnerContext.from_json(text) for text in self._store.matching_runner_contexts(partial_id))
