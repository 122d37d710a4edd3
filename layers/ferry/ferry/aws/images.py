"""ECR image references: always pinned by digest in what Ferry registers."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ferry import aws
from ferry.errors import ImageNotFound

ECR_URI = re.compile(
    r"^(?P<registry>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(?P<repository>[^:@]+)"
    r"(?::(?P<tag>[^@]+))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


@dataclass(frozen=True)
class ImageRef:
    registry: str
    region: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def base(self) -> str:
        return f"{self.registry}.dkr.ecr.{self.region}.amazonaws.com/{self.repository}"

    @property
    def pinned(self) -> str:
        if not self.digest:
            raise ValueError(f"{self.base}: no digest")
        return f"{self.base}@{self.digest}"

    @property
    def reference(self) -> str:
        """<base>:<tag>@<digest>: pinned, and still saying which tag it was pushed as."""
        return f"{self.base}:{self.tag}@{self.digest}" if self.tag else self.pinned

    def short(self) -> str:
        label = self.tag or ""
        if self.digest:
            label += f"{' ' if label else ''}({self.digest[:15]}…)"
        return f"{self.repository}:{label}" if self.tag else f"{self.repository}@{self.digest[:15]}…"


def parse(uri: str) -> ImageRef | None:
    match = ECR_URI.match(uri)
    if not match:
        return None
    return ImageRef(match["registry"], match["region"], match["repository"], match["tag"], match["digest"])


def resolve(registry: str, region: str, repository: str, tag: str | None = None, digest: str | None = None) -> ImageRef:
    """Look the image up in ECR; returns it with both tag (when known) and digest."""
    ecr = aws.client("ecr")
    image_id = {"imageDigest": digest} if digest else {"imageTag": tag}
    try:
        details = ecr.describe_images(registryId=registry, repositoryName=repository, imageIds=[image_id])[
            "imageDetails"
        ]
    except (ecr.exceptions.ImageNotFoundException, ecr.exceptions.RepositoryNotFoundException) as exc:
        wanted = digest or tag
        raise ImageNotFound(f"image {repository}:{wanted} is not in ECR ({registry}, {region}): push it first") from exc
    found = details[0]
    return ImageRef(
        registry, region, repository, tag or next(iter(found.get("imageTags", [])), None), found["imageDigest"]
    )
