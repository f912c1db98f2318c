"""The request page tells a reviewer the shape of the data a job feeds its model."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from domain.models import AccessRequest, RequestDataset
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD
from tests.console.conftest import sign_in
from tests.domain.image_zips import digits_zip
from tests.domain.uploads import upload


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_request_page_shows_the_input_shape_of_an_image_dataset(
    app: Flask, client: FlaskClient, headers: dict[str, dict[str, str]]
) -> None:
    zipped = upload(
        client, headers["owner"], "images", data=digits_zip(5), filename="d.zip", label="label"
    )
    assert zipped.status_code == 201
    assert upload(client, headers["owner"], "table").status_code == 201
    with app.extensions["database"].sessionmaker() as session:
        item = AccessRequest(
            kind="job",
            requester_label="scientist@lab.org",
            reason="a digit CNN",
            plan={"loss": "cross_entropy"},
            datasets=[
                RequestDataset(dataset_name="images", dataset_id=1),
                RequestDataset(dataset_name="table", dataset_id=2),
            ],
        )
        session.add(item)
        session.commit()
        request_id = item.id
    console = app.test_client()
    sign_in(console, OWNER_EMAIL, OWNER_PASSWORD)
    page = console.get(f"/requests/{request_id}").get_data(as_text=True)
    assert "images: <code>[N, 1, 8, 8]</code> (L images, channels first" in page
    assert "table: <code>[N, 2]</code>" in page
