"""The reports as people take them away: SVG charts (`charts`), shared by the portal's reports
page and the yearly PDF, and the exports `advisory report` writes (`exports`: CSV, XLSX, PDF)."""
