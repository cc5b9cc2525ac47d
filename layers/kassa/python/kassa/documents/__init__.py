"""Invoice documents rendered from the document view (``kassa.domain.documents.Document``): the PDF
(``kassa.documents.pdf``) and the Peppol BIS Billing 3.0 e-invoice (``kassa.documents.ubl``).
Imports ``kassa.domain`` (and the PDF its fonts and translations) only; no I/O."""
