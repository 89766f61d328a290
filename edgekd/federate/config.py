"""What a federation is: a frozen, validated config that the server sends to every client."""

from __future__ import annotations

import enum
import json

from pydantic import BaseModel, ConfigDict, Field

from edgekd.errors import UserError


class Strategy(str, enum.Enum):
    FEDAVG = "fedavg"
    FEDPROX = "fedprox"
    FEDGEN = "fedgen"


class FederationConfig(BaseModel):
    """One federation. `rounds` is the only field a resumed run may change (to extend a finished one)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: Strategy = Strategy.FEDGEN
    data: str = "fashion-mnist"
    arch: str = "cnn-s"
    clients: int = Field(20, ge=1)
    sample: int = Field(10, ge=1)
    rounds: int = 10
    alpha: float = Field(0.1, gt=0)
    seed: int = 0
    limit: int | None = Field(None, ge=1)
    local_epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.01, gt=0)
    proximal_mu: float = Field(0.01, ge=0)

    def check(self) -> FederationConfig:
        """The errors a user can make that pydantic's ranges do not name well; returns self."""
        if self.rounds <= 0:
            raise UserError(f"--rounds must be at least 1, got {self.rounds}")
        if self.sample > self.clients:
            raise UserError(
                f"--sample {self.sample} is more than --clients {self.clients}; sample at most as many clients as exist"
            )
        return self

    def same_run(self, other: FederationConfig) -> bool:
        """Equal but for `rounds`: a checkpoint of `other` may be resumed under `self`."""
        return self.model_dump(exclude={"rounds"}) == other.model_dump(exclude={"rounds"})

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FederationConfig:
        return cls.model_validate(json.loads(text))
